package traffic

import (
	"context"
	"fmt"
	"math/rand"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"etcd-grpc-proxy.test/robustness/history"
)

// KVPrefix is the etcd-shaped clients' key space.
const KVPrefix = "/r/kv/"

const kvKeys = 6

// RunEtcd is an etcd-shaped client: puts, linearizable and serializable
// ranges of one key or the prefix, txns comparing a mod revision, deletes.
func RunEtcd(ctx context.Context, env *Env, id int, cli *clientv3.Client, rnd *rand.Rand) {
	c := newKVClient(env, id, cli)
	seen := map[string]int64{} // mod revision last read per key
	for n := 0; ctx.Err() == nil; n++ {
		key := fmt.Sprintf("%s%d", KVPrefix, rnd.Intn(kvKeys))
		val := fmt.Sprintf("c%d-%d", id, n)
		switch p := rnd.Intn(100); {
		case p < 25:
			c.Do(ctx, history.Request{Kind: history.Put, Key: key, Value: val})
		case p < 45:
			r := c.Do(ctx, history.Request{Kind: history.Range, Key: key})
			if r.Err == "" {
				seen[key] = 0
				for _, kv := range r.KVs {
					seen[key] = kv.ModRev
				}
			}
		case p < 55:
			c.Do(ctx, history.Request{Kind: history.Range, Key: KVPrefix, End: clientv3.GetPrefixRangeEnd(KVPrefix)})
		case p < 63:
			c.Do(ctx, history.Request{Kind: history.Range, Key: key, Serializable: true})
		case p < 70:
			c.Do(ctx, history.Request{Kind: history.Range, Key: KVPrefix, End: clientv3.GetPrefixRangeEnd(KVPrefix), Serializable: true})
		case p < 88:
			c.Do(ctx, history.Request{Kind: history.Txn,
				Cmps: []history.Cmp{{Key: key, Target: "mod", Rev: seen[key]}},
				Then: []history.Request{{Kind: history.Put, Key: key, Value: val}},
				Else: []history.Request{{Kind: history.Range, Key: key}}})
		default:
			c.Do(ctx, history.Request{Kind: history.Delete, Key: key})
		}
		pause(ctx, rnd, 10*time.Millisecond)
	}
}

func pause(ctx context.Context, rnd *rand.Rand, max time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(rnd.Int63n(int64(max)))):
	}
}

// RunLeases is a lease client: grant a lease, put keys under it, keep it
// alive (one keep-alive a second, each recorded) for a few seconds, revoke
// it; a lease found gone is recorded as expired.
func RunLeases(ctx context.Context, env *Env, id int, cli *clientv3.Client, rnd *rand.Rand) {
	c := newKVClient(env, id, cli)
	for n := 1; ctx.Err() == nil; n++ {
		l := &history.Lease{ID: int64(id)<<32 | int64(n), TTL: 6}
		if r := c.Do(ctx, history.Request{Kind: history.LeaseGrant, Lease: l.ID, TTL: l.TTL}); r.Err != "" {
			pause(ctx, rnd, 500*time.Millisecond)
			continue
		}
		l.Granted = env.Now()
		env.Rec.AddLease(l)
		lastAlive := l.Granted
		gone := func() {
			l.GoneAt = env.Now()
			env.Rec.AddOp(history.Op{Client: id, Req: history.Request{Kind: history.LeaseExpire, Lease: l.ID}, Call: lastAlive, Return: l.GoneAt})
		}
		stop := time.Now().Add(time.Duration(2+rnd.Intn(5)) * time.Second)
		alive := true
		for k := 0; alive && ctx.Err() == nil && time.Now().Before(stop); k++ {
			if k%2 == 0 {
				r := c.Do(ctx, history.Request{Kind: history.Put, Key: fmt.Sprintf("/r/lease/%x-%d", l.ID, k), Value: fmt.Sprintf("l%x-%d", l.ID, k), Lease: l.ID})
				if r.Err != "" && isLeaseNotFound(r.Err) {
					gone()
					alive = false
					break
				}
			}
			ka := c.keepAlive(ctx, l.ID)
			l.KeepAlives = append(l.KeepAlives, ka)
			switch {
			case ka.Err == "" && ka.TTL > 0:
				lastAlive = ka.Return
			case ka.Err == "" && ka.TTL <= 0:
				gone()
				alive = false
			}
			pause(ctx, rnd, time.Second)
		}
		if alive {
			rctx, cancel := context.WithTimeout(context.Background(), 2*env.OpTimeout)
			r := c.Do(rctx, history.Request{Kind: history.LeaseRevoke, Lease: l.ID})
			cancel()
			if r.Err != "" && isLeaseNotFound(r.Err) {
				gone()
			}
		}
	}
}

func isLeaseNotFound(err string) bool {
	return contains(err, "requested lease not found")
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
