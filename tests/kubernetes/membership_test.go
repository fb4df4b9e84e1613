package kubernetes

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// addMemberThenKillFirst is the story's change: `member add` of a fourth
// member, started with --initial-cluster-state existing, then the first
// member (the one the proxy was given) is killed.
func (c *cluster) addMemberThenKillFirst(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints("direct"), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Errorf("member add client: %v", err)
		return
	}
	defer cli.Close()
	m := &member{name: "m4", client: "http://" + freePort(), peer: "http://" + freePort()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err = cli.MemberAdd(ctx, []string{m.peer}); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Errorf("member add: %v", err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	var initial []string
	c.mu.Lock()
	for _, x := range append(c.members, m) {
		initial = append(initial, x.name+"="+x.peer)
	}
	c.mu.Unlock()
	if err := c.spawn(m, strings.Join(initial, ","), "existing"); err != nil {
		t.Errorf("start m4: %v", err)
		return
	}
	c.mu.Lock()
	c.members = append(c.members, m)
	c.mu.Unlock()
	if err := c.waitHealthy(); err != nil {
		t.Errorf("m4 healthy: %v", err)
		return
	}
	c.mu.Lock()
	first := c.members[0]
	cmd := first.cmd
	first.cmd = nil
	c.mu.Unlock()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// TestStorageSuitesWhileMembershipChanges runs the suites that need no
// fresh etcd again and again while a member is added and the first one
// killed, on a cluster per target: through the proxy (given only the first
// member) nothing may fail, as directly (a client given the three members).
func TestStorageSuitesWhileMembershipChanges(t *testing.T) {
	for _, name := range []string{"direct", "proxy"} {
		t.Run(name, func(t *testing.T) {
			c := freshCluster(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(500 * time.Millisecond)
				c.addMemberThenKillFirst(t)
			}()
			for round := 0; ; round++ {
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				for _, s := range suites {
					if s.fresh {
						continue
					}
					t.Run(s.name, func(t *testing.T) {
						s.run(t, target{name: name, c: c, prefix: new(string)})
					})
				}
				// One whole round after the change has completed.
				if finished {
					return
				}
			}
		})
	}
}
