package traffic

import (
	"context"
	"fmt"
	"sort"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"etcd-grpc-proxy.test/robustness/history"
)

// Truth is the members' own event log of the traffic's key space, watched
// directly on the members (no proxy) from revision 1 with prev_kv.
type Truth struct {
	mu     sync.Mutex
	events []history.Event
	last   int64
	err    error
}

// Follow watches the members until ctx ends, resuming after every break.
func (t *Truth) Follow(ctx context.Context, cli *clientv3.Client) {
	for ctx.Err() == nil {
		t.mu.Lock()
		next := t.last + 1
		t.mu.Unlock()
		for resp := range cli.Watch(clientv3.WithRequireLeader(ctx), "/r/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(next)) {
			t.mu.Lock()
			if resp.CompactRevision != 0 {
				t.err = fmt.Errorf("the members' log was compacted (to %d) past what was read of it (%d)", resp.CompactRevision, t.last)
			}
			for _, ev := range resp.Events {
				t.events = append(t.events, EventOf(ev))
			}
			if n := len(t.events); n > 0 {
				t.last = t.events[n-1].KV.ModRev
			}
			t.mu.Unlock()
		}
	}
}

// Last is the revision of the last event read.
func (t *Truth) Last() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Events is the log in revision order, or why it is incomplete.
func (t *Truth) Events() ([]history.Event, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]history.Event(nil), t.events...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].KV.ModRev < out[j].KV.ModRev })
	return out, t.err
}
