// Package kubernetes runs Kubernetes' own storage conformance suites
// (k8s.io/apiserver/pkg/storage/testing, as pkg/storage/etcd3 and
// pkg/storage/cacher call them) on a clientv3 connected to the proxy, and
// the same suites directly against etcd, on one 3-member cluster.
//
// The harness starts real members (ETCD_BIN, default the 3.6 build under
// target/etcd/3.6/bin) and the proxy binary (PROXY_BIN, default
// target/debug/etcd-grpc-proxy) on free loopback ports in a temp dir; the
// proxy is given one endpoint only.
package kubernetes

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"
)

// member is one etcd process the harness started.
type member struct {
	name, client, peer string
	cmd                *exec.Cmd
}

// cluster is the shared 3-member cluster and the proxy in front of it.
type cluster struct {
	mu      sync.Mutex // guards members while a test changes them
	members []*member
	proxy   string
	dir     string
	procs   []*exec.Cmd
	etcdBin string
}

var (
	shared     *cluster
	sharedErr  error
	sharedOnce sync.Once
)

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func binary(env, def, hint string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(repoRoot(), def)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found (%v): %s", p, err, hint)
	}
	return p, nil
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The cluster, started on first use and stopped by TestMain.
func theCluster(t testing.TB) *cluster {
	sharedOnce.Do(func() { shared, sharedErr = startCluster() })
	if sharedErr != nil {
		t.Fatalf("cannot start the cluster: %v", sharedErr)
	}
	return shared
}

// freshCluster is a new cluster (and proxy) of the suite's own, for suites
// that assume etcd is fresh: they watch from revision 1, compact, or count
// revisions. Upstream, every suite gets a fresh in-process etcd.
func freshCluster(t testing.TB) *cluster {
	c, err := startCluster()
	if err != nil {
		t.Fatalf("cannot start a cluster: %v", err)
	}
	t.Cleanup(c.stop)
	return c
}

func startCluster() (*cluster, error) {
	etcdBin, err := binary("ETCD_BIN", "target/etcd/3.6/bin/etcd", "run `bash scripts/etcd-bin.sh 3.6` (or `make test`), or set ETCD_BIN")
	if err != nil {
		return nil, err
	}
	proxyBin, err := binary("PROXY_BIN", "target/debug/etcd-grpc-proxy", "run `cargo build` (or `make test`), or set PROXY_BIN")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "egp-k8s-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, etcdBin: etcdBin}
	var initial []string
	for i := 1; i <= 3; i++ {
		m := &member{name: fmt.Sprintf("m%d", i), client: "http://" + freePort(), peer: "http://" + freePort()}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range c.members {
		if err := c.spawn(m, strings.Join(initial, ","), "new"); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitHealthy(); err != nil {
		c.stop()
		return nil, err
	}
	c.proxy = freePort()
	proxy := exec.Command(proxyBin, "start", "--endpoints="+c.members[0].client, "--listen-addr="+c.proxy)
	log, _ := os.Create(filepath.Join(dir, "proxy.log"))
	proxy.Stdout, proxy.Stderr = log, log
	if err := proxy.Start(); err != nil {
		c.stop()
		return nil, err
	}
	c.procs = append(c.procs, proxy)
	if err := waitFor(30*time.Second, func() bool { return httpOK("http://" + c.proxy + "/readyz") }); err != nil {
		c.stop()
		return nil, fmt.Errorf("proxy not ready: %v (log in %s)", err, dir)
	}
	return c, nil
}

func (c *cluster) spawn(m *member, initial, state string) error {
	cmd := exec.Command(c.etcdBin,
		"--name="+m.name,
		"--data-dir="+filepath.Join(c.dir, m.name),
		"--listen-client-urls="+m.client, "--advertise-client-urls="+m.client,
		"--listen-peer-urls="+m.peer, "--initial-advertise-peer-urls="+m.peer,
		"--initial-cluster="+initial, "--initial-cluster-state="+state,
		"--initial-cluster-token=egp-k8s",
		// The watch suites want progress notifications every second, as
		// their in-process etcd is configured (WatchProgressNotifyInterval).
		"--experimental-watch-progress-notify-interval=1s",
	)
	log, _ := os.Create(filepath.Join(c.dir, m.name+".log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd = cmd
	c.procs = append(c.procs, cmd)
	return nil
}

func (c *cluster) waitHealthy() error {
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		if err := waitFor(60*time.Second, func() bool { return httpOK(m.client + "/health") }); err != nil {
			return fmt.Errorf("member %s: %v (logs in %s)", m.name, err, c.dir)
		}
	}
	return nil
}

func (c *cluster) stop() {
	for _, p := range c.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	_ = os.RemoveAll(c.dir)
}

func httpOK(url string) bool {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func waitFor(limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ok() {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v", limit)
}

// endpoints of a target: the proxy's one address, or every member.
func (c *cluster) endpoints(target string) []string {
	if target == "proxy" {
		return []string{c.proxy}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		if m.cmd != nil {
			eps = append(eps, strings.TrimPrefix(m.client, "http://"))
		}
	}
	return eps
}

// client is a Kubernetes etcd client towards a target, as kube-apiserver
// builds one (require-leader on its watches comes from the etcd3 store).
func (c *cluster) client(t testing.TB, target string) *kubernetes.Client {
	cfg := clientv3.Config{
		Endpoints:   c.endpoints(target),
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	}
	kc, err := kubernetes.New(cfg)
	if err != nil {
		t.Fatalf("client for %s: %v", target, err)
	}
	t.Cleanup(func() { _ = kc.Close() })
	return kc
}

func TestMain(m *testing.M) {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(discard{}, discard{}, os.Stderr))
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// uniquePrefix keeps each suite run's keys apart on the shared cluster.
var prefixSeq struct {
	sync.Mutex
	n int
}

func uniquePrefix(target, suite string) string {
	prefixSeq.Lock()
	defer prefixSeq.Unlock()
	prefixSeq.n++
	return fmt.Sprintf("/%s-%d-%s", target, prefixSeq.n, strings.ToLower(suite))
}

var _ = context.Background
