// Package kubernetes runs Kubernetes' own storage conformance suites
// (k8s.io/apiserver/pkg/storage/testing, as pkg/storage/etcd3 and
// pkg/storage/cacher call them) on a clientv3 connected to the proxy, and
// the same suites directly against etcd.
//
// The harness starts real members (ETCD_BIN, default the 3.6 build under
// target/etcd/3.6/bin) and the proxy binary (PROXY_BIN, default
// target/debug/etcd-grpc-proxy) on free loopback ports in a temp dir; the
// proxy is given one endpoint only.
package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"

	"etcd-grpc-proxy.test/kubernetes/harness"
)

// memberFlags: the watch suites want progress notifications every second,
// as their in-process etcd is configured (WatchProgressNotifyInterval).
var memberFlags = []string{"--experimental-watch-progress-notify-interval=1s"}

// cluster is a 3-member cluster and the proxy in front of it.
type cluster struct {
	*harness.Cluster
	proxy string
	// directSkipsFirst: direct clients are given every member but the
	// first (the one the membership test kills).
	directSkipsFirst bool
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

// theCluster is the shared cluster, started on first use, stopped by TestMain.
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
	t.Cleanup(c.Stop)
	return c
}

func startCluster() (*cluster, error) {
	root := repoRoot()
	etcdBin, err := harness.Binary(root, "ETCD_BIN", "target/etcd/3.6/bin/etcd", "run `bash scripts/etcd-bin.sh 3.6` (or `make test`), or set ETCD_BIN")
	if err != nil {
		return nil, err
	}
	proxyBin, err := harness.Binary(root, "PROXY_BIN", "target/debug/etcd-grpc-proxy", "run `cargo build` (or `make test`), or set PROXY_BIN")
	if err != nil {
		return nil, err
	}
	hc, err := harness.Start(etcdBin, 3, memberFlags...)
	if err != nil {
		return nil, err
	}
	proxy, err := hc.StartProxy("proxy", proxyBin, "start", "--endpoints="+hc.First(), "--listen-addr={addr}")
	if err != nil {
		hc.Stop()
		return nil, err
	}
	return &cluster{Cluster: hc, proxy: proxy}, nil
}

// endpoints of a target: the proxy's one address, or every running member.
func (c *cluster) endpoints(target string) []string {
	if target == "proxy" {
		return []string{c.proxy}
	}
	eps := c.Endpoints()
	if c.directSkipsFirst && len(eps) > 1 && eps[0] == c.First() {
		// The reference client is not given the member about to die: its
		// writes in flight there would fail, which is etcd's behaviour
		// and not what the comparison is about.
		return eps[1:]
	}
	return eps
}

// client is a Kubernetes etcd client towards a target, as kube-apiserver
// builds one (require-leader on its watches comes from the etcd3 store).
func (c *cluster) client(t testing.TB, target string, opts ...grpc.DialOption) *kubernetes.Client {
	cfg := clientv3.Config{Endpoints: c.endpoints(target), DialTimeout: 10 * time.Second, Logger: zap.NewNop(), DialOptions: opts}
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
		shared.Stop()
	}
	os.Exit(code)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// uniquePrefix keeps each suite run's keys apart on a shared cluster.
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
