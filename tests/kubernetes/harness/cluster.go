// Package harness starts real etcd members and proxies on free loopback
// ports in a temp dir, for the Kubernetes storage suites and benchmark.
package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one etcd process.
type Member struct {
	Name, Client, Peer string
	cmd                *exec.Cmd
}

// Cluster is a set of real members, and the processes started beside them.
type Cluster struct {
	mu      sync.Mutex
	members []*Member
	// Dir holds the members' data and every process's log.
	Dir     string
	procs   []*exec.Cmd
	named   map[string]*exec.Cmd
	etcdBin string
}

var nextPort = struct {
	sync.Mutex
	n int
}{n: os.Getpid() * 7919 % portSpan}

const (
	portLow  = 20000
	portSpan = 12000
)

// FreeAddr is a loopback host:port nobody listens on right now, for a
// process about to listen on it. It is taken below the kernel's ephemeral
// range: a port bind(0) hands out can meanwhile become the source port of
// an outgoing connection, and the member then cannot listen on it.
func FreeAddr() string {
	nextPort.Lock()
	defer nextPort.Unlock()
	for i := 0; i < portSpan; i++ {
		port := portLow + nextPort.n%portSpan
		nextPort.n++
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return l.Addr().String()
		}
	}
	panic("no free loopback port")
}

// Start starts n members of etcdBin, with extra flags, and waits until healthy.
func Start(etcdBin string, n int, extra ...string) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "egp-k8s-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, etcdBin: etcdBin}
	var initial []string
	for i := 1; i <= n; i++ {
		m := &Member{Name: fmt.Sprintf("m%d", i), Client: "http://" + FreeAddr(), Peer: "http://" + FreeAddr()}
		c.members = append(c.members, m)
		initial = append(initial, m.Name+"="+m.Peer)
	}
	for _, m := range c.members {
		if err := c.spawn(m, strings.Join(initial, ","), "new", extra); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.waitHealthy(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) spawn(m *Member, initial, state string, extra []string) error {
	args := []string{
		"--name=" + m.Name,
		"--data-dir=" + filepath.Join(c.Dir, m.Name),
		"--listen-client-urls=" + m.Client, "--advertise-client-urls=" + m.Client,
		"--listen-peer-urls=" + m.Peer, "--initial-advertise-peer-urls=" + m.Peer,
		"--initial-cluster=" + initial, "--initial-cluster-state=" + state,
		"--initial-cluster-token=egp-k8s",
	}
	cmd, err := c.run(m.Name, c.etcdBin, append(args, extra...)...)
	if err != nil {
		return err
	}
	m.cmd = cmd
	return nil
}

// run starts a process beside the cluster, logging to Dir/<name>.log.
func (c *Cluster) run(name, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	log, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, cmd)
	if c.named == nil {
		c.named = map[string]*exec.Cmd{}
	}
	c.named[name] = cmd
	c.mu.Unlock()
	return cmd, nil
}

// CPU is the CPU time (user and system) the processes started under these
// names have used so far, read from /proc; a name not running counts zero.
func (c *Cluster) CPU(names ...string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total time.Duration
	for _, n := range names {
		if cmd := c.named[n]; cmd != nil && cmd.Process != nil {
			total += processCPU(cmd.Process.Pid)
		}
	}
	return total
}

// MemberNames are the names of the members running now, for CPU.
func (c *Cluster) MemberNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for _, m := range c.members {
		if m.cmd != nil {
			names = append(names, m.Name)
		}
	}
	return names
}

// processCPU reads utime and stime (fields 14 and 15, in clock ticks of
// 1/100 s on Linux) of /proc/<pid>/stat; zero if it cannot.
func processCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from after it.
	s := string(raw)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// StartProxy runs a proxy binary with args (its listen address is "{addr}"
// in them) and waits until it answers /readyz or, for etcd's proxy, /health.
func (c *Cluster) StartProxy(name, bin string, args ...string) (string, error) {
	addr := FreeAddr()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{addr}", addr)
	}
	if _, err := c.run(name, bin, args...); err != nil {
		return "", err
	}
	ready := func() bool { return httpOK("http://"+addr+"/readyz") || httpOK("http://"+addr+"/health") }
	if err := waitFor(30*time.Second, ready); err != nil {
		return "", fmt.Errorf("%s not ready: %v (log in %s)", name, err, c.Dir)
	}
	return addr, nil
}

func (c *Cluster) waitHealthy() error {
	c.mu.Lock()
	members := append([]*Member(nil), c.members...)
	c.mu.Unlock()
	for _, m := range members {
		if m.cmd == nil {
			continue
		}
		if err := waitFor(60*time.Second, func() bool { return httpOK(m.Client + "/health") }); err != nil {
			return fmt.Errorf("member %s: %v (logs in %s)", m.Name, err, c.Dir)
		}
	}
	return nil
}

// Endpoints are the running members' host:port.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		if m.cmd != nil {
			eps = append(eps, strings.TrimPrefix(m.Client, "http://"))
		}
	}
	return eps
}

// First is the first member's host:port (what a proxy is given).
func (c *Cluster) First() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimPrefix(c.members[0].Client, "http://")
}

// AddMemberThenKillFirst is the story's change: `member add` of a new
// member, started with --initial-cluster-state existing, then the first
// member is killed (after handing leadership away if it led).
func (c *Cluster) AddMemberThenKillFirst(extra ...string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	c.mu.Lock()
	m := &Member{Name: fmt.Sprintf("m%d", len(c.members)+1), Client: "http://" + FreeAddr(), Peer: "http://" + FreeAddr()}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err = cli.MemberAdd(ctx, []string{m.Peer}); err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("member add: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.mu.Lock()
	var initial []string
	for _, x := range append(c.members, m) {
		initial = append(initial, x.Name+"="+x.Peer)
	}
	c.mu.Unlock()
	if err := c.spawn(m, strings.Join(initial, ","), "existing", extra); err != nil {
		return err
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	first := c.members[0]
	c.mu.Unlock()
	if err := c.waitHealthy(); err != nil {
		return err
	}
	moveLeaderOff(first)
	c.mu.Lock()
	cmd := first.cmd
	first.cmd = nil
	c.mu.Unlock()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil
}

// moveLeaderOff hands leadership to another member when m leads, so its
// death is a member's death and not also an election (best effort).
func moveLeaderOff(m *Member) {
	ep := strings.TrimPrefix(m.Client, "http://")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, ep)
	if err != nil || st.Leader != st.Header.MemberId {
		return
	}
	members, err := cli.MemberList(ctx)
	if err != nil {
		return
	}
	for _, x := range members.Members {
		if x.ID != st.Header.MemberId && !x.IsLearner && len(x.ClientURLs) > 0 {
			_, _ = cli.MoveLeader(ctx, x.ID)
			return
		}
	}
}

// Stop kills every process and removes Dir.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	_ = os.RemoveAll(c.Dir)
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

// Binary is $env, or def under the repository root, or an error saying how to get it.
func Binary(root, env, def, hint string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(root, def)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found (%v): %s", p, err, hint)
	}
	return p, nil
}
