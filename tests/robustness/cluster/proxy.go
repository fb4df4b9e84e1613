package cluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

var nextPort = struct {
	sync.Mutex
	n int
}{n: os.Getpid() * 7919 % portSpan}

const (
	portLow  = 20000
	portSpan = 12000
)

// FreeAddr is a loopback host:port nobody listens on now, taken below the
// kernel's ephemeral range so no outgoing connection can be holding it.
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

// Proxy is one proxy process on a fixed listen address (kept across restarts).
type Proxy struct {
	Name, Addr, Metrics string
	Ours                bool
	Bin                 string
	Epoch               int
	cmd                 *exec.Cmd
	mu                  sync.Mutex
}

// NewProxy describes a proxy (ours unless etcd's grpc-proxy: bin is then the etcd binary).
func NewProxy(name, bin string, ours bool) *Proxy {
	return &Proxy{Name: name, Addr: FreeAddr(), Metrics: FreeAddr(), Ours: ours, Bin: bin}
}

// StartProxy starts the proxy towards endpoints (ours is given only the first)
// and waits until it is ready.
func (c *Cluster) StartProxy(p *Proxy, endpoints []string) error {
	var args []string
	dataDir := filepath.Join(c.Dir, p.Name+".data")
	if p.Ours {
		args = []string{"start", "--endpoints=" + endpoints[0], "--listen-addr=" + p.Addr,
			"--metrics-addr=http://" + p.Metrics, "--data-dir=" + dataDir}
	} else {
		var hosts []string
		for _, e := range endpoints {
			hosts = append(hosts, strings.TrimPrefix(e, "http://"))
		}
		args = []string{"grpc-proxy", "start", "--endpoints=" + strings.Join(hosts, ","), "--listen-addr=" + p.Addr,
			"--advertise-client-url=" + p.Addr, "--metrics-addr=http://" + p.Metrics, "--data-dir=" + dataDir}
	}
	cmd, err := c.Run(p.Name, p.Bin, args...)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.cmd = cmd
	p.Epoch++
	p.mu.Unlock()
	ready := "http://" + p.Metrics + "/readyz"
	if !p.Ours {
		ready = "http://" + p.Metrics + "/health"
	}
	if err := WaitHTTP(ready, 30*time.Second); err != nil {
		return fmt.Errorf("%s: %v (log in %s)", p.Name, err, c.Dir)
	}
	return nil
}

// KillProxy kill -9s the proxy.
func (c *Cluster) KillProxy(p *Proxy) {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	c.Kill(cmd)
}

// CurrentEpoch is the proxy's incarnation number (raised at each start).
func (p *Proxy) CurrentEpoch() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Epoch
}

// Pid is the running proxy's process id (0 when it is not running).
func (p *Proxy) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
