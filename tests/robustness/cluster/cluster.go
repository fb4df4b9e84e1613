package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Member is one etcd process in namespace egprm<Index>.
type Member struct {
	Index int
	Name  string
	ID    uint64
	cmd   *exec.Cmd
}

// Client is the member's client URL.
func (m *Member) Client() string { return "http://" + memberIP(m.Index) + ":2379" }

// Peer is the member's peer URL.
func (m *Member) Peer() string { return "http://" + memberIP(m.Index) + ":2380" }

// Cluster is the members, with the processes started beside them.
type Cluster struct {
	mu      sync.Mutex
	Dir     string
	EtcdBin string
	members []*Member // current members (running or killed), in index order
	next    int
	procs   map[*exec.Cmd]bool
}

// Start makes the bridge and n member namespaces and starts the members.
func Start(etcdBin, dir string, n int) (*Cluster, error) {
	Cleanup()
	if err := setupBridge(); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, EtcdBin: etcdBin, next: 1, procs: map[*exec.Cmd]bool{}}
	for i := 0; i < n; i++ {
		c.members = append(c.members, &Member{Index: c.next, Name: fmt.Sprintf("m%d", c.next)})
		c.next++
	}
	initial := c.initialCluster(c.members)
	for _, m := range c.members {
		if err := addNetns(m.Index); err != nil {
			return c, err
		}
		if err := c.spawn(m, initial, "new"); err != nil {
			return c, err
		}
	}
	for _, m := range c.members {
		if err := WaitHTTP(m.Client()+"/health", 60*time.Second); err != nil {
			return c, fmt.Errorf("member %s: %v (logs in %s)", m.Name, err, dir)
		}
	}
	return c, nil
}

func (c *Cluster) initialCluster(ms []*Member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Name+"="+m.Peer())
	}
	return strings.Join(parts, ",")
}

func (c *Cluster) spawn(m *Member, initial, state string) error {
	args := []string{"netns", "exec", nsName(m.Index), c.EtcdBin,
		"--name=" + m.Name,
		"--data-dir=" + filepath.Join(c.Dir, m.Name),
		"--listen-client-urls=" + m.Client(), "--advertise-client-urls=" + m.Client(),
		"--listen-peer-urls=" + m.Peer(), "--initial-advertise-peer-urls=" + m.Peer(),
		"--initial-cluster=" + initial, "--initial-cluster-state=" + state,
		"--initial-cluster-token=egpr-robustness",
	}
	cmd, err := c.Run(m.Name, "ip", args...)
	if err != nil {
		return err
	}
	m.cmd = cmd
	return nil
}

// Run starts a process (killed with the harness), logging to Dir/<name>.log.
func (c *Cluster) Run(name, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(bin, args...)
	log, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	c.mu.Lock()
	c.procs[cmd] = true
	c.mu.Unlock()
	go func() { _ = cmd.Wait(); log.Close() }()
	return cmd, nil
}

// Kill sends SIGKILL to a process started by Run and waits until it is gone.
func (c *Cluster) Kill(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	for i := 0; i < 100; i++ {
		if cmd.ProcessState != nil || syscall.Kill(cmd.Process.Pid, 0) != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.mu.Lock()
	delete(c.procs, cmd)
	c.mu.Unlock()
}

// Members are the current members.
func (c *Cluster) Members() []*Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Member(nil), c.members...)
}

// Endpoints are the current members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members() {
		eps = append(eps, m.Client())
	}
	return eps
}

// Client is a direct client to every current member (not through any proxy).
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 3 * time.Second,
		DialKeepAliveTime: time.Second, DialKeepAliveTimeout: time.Second, Logger: zap.NewNop()})
}

// KillMember kill -9s member m.
func (c *Cluster) KillMember(m *Member) { c.Kill(m.cmd); m.cmd = nil }

// RestartMember starts a killed member again on its data dir and waits until healthy.
func (c *Cluster) RestartMember(m *Member) error {
	if err := c.spawn(m, c.initialCluster(c.Members()), "existing"); err != nil {
		return err
	}
	return WaitHTTP(m.Client()+"/health", 60*time.Second)
}

// RemoveMember removes m from the cluster (member remove), kills it and deletes its namespace.
func (c *Cluster) RemoveMember(ctx context.Context, m *Member) error {
	cli, err := c.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		err = removeByName(ctx, cli, m.Name)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("member remove: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.KillMember(m)
	delNetns(m.Index)
	c.mu.Lock()
	for i, x := range c.members {
		if x == m {
			c.members = append(c.members[:i], c.members[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	_ = os.RemoveAll(filepath.Join(c.Dir, m.Name))
	return nil
}

func removeByName(ctx context.Context, cli *clientv3.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return err
	}
	for _, x := range list.Members {
		if x.Name == name {
			_, err = cli.MemberRemove(ctx, x.ID)
			return err
		}
	}
	return nil
}

// AddMember adds a fresh member (member add, then started with state existing) and waits until healthy.
func (c *Cluster) AddMember(ctx context.Context) (*Member, error) {
	c.mu.Lock()
	m := &Member{Index: c.next, Name: fmt.Sprintf("m%d", c.next)}
	c.next++
	c.mu.Unlock()
	if err := addNetns(m.Index); err != nil {
		return nil, err
	}
	cli, err := c.Client()
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cli.MemberAdd(actx, []string{m.Peer()})
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			delNetns(m.Index)
			return nil, fmt.Errorf("member add: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	if err := c.spawn(m, c.initialCluster(c.Members()), "existing"); err != nil {
		return m, err
	}
	return m, WaitHTTP(m.Client()+"/health", 60*time.Second)
}

// Pause stops (SIGSTOP) or resumes (SIGCONT) member m's process.
func (c *Cluster) Pause(m *Member, stop bool) {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	_ = m.cmd.Process.Signal(sig)
}

// Stop kills every process and removes the namespaces and bridge.
func (c *Cluster) Stop() {
	c.mu.Lock()
	var procs []*exec.Cmd
	for p := range c.procs {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGCONT)
		c.Kill(p)
	}
	Cleanup()
}

// WaitHTTP polls url until it answers 200.
func WaitHTTP(url string, limit time.Duration) error {
	client := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering 200 after %v", url, limit)
}
