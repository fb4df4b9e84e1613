package kubernetes

import (
	"testing"
	"time"
)

// TestStorageSuitesWhileMembershipChanges runs the suites that need no
// fresh etcd again and again while a member is added and the first one
// killed, on a cluster per target: through the proxy (given only the first
// member) nothing may fail, as directly (a client given the members that
// stay; the first one, about to die, is the proxy's only endpoint).
func TestStorageSuitesWhileMembershipChanges(t *testing.T) {
	for _, name := range []string{"direct", "proxy"} {
		t.Run(name, func(t *testing.T) {
			c := freshCluster(t)
			c.directSkipsFirst = true
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(500 * time.Millisecond)
				if err := c.AddMemberThenKillFirst(memberFlags...); err != nil {
					t.Errorf("member add, then the first member killed: %v", err)
				}
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
