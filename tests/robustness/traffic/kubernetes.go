package traffic

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"etcd-grpc-proxy.test/robustness/history"
)

// PodPrefix is the Kubernetes-shaped clients' key space.
const PodPrefix = "/r/pods/"

// CompactKey is where the compactor keeps its Txn-guarded marker, as the apiserver does.
const CompactKey = "/r/compact_rev_key"

const pods = 8

// Compacted is the highest revision compacted so far (watches in the past start above it).
var Compacted atomic.Int64

// RunKubernetes is a Kubernetes-shaped client: list the prefix, watch it
// from the list's revision (or from a little in the past) with prev_kv and
// progress notifications, request progress, and write pods with
// create/update/delete Txns guarded by mod revision; relist every few seconds.
func RunKubernetes(ctx context.Context, env *Env, id int, cli *clientv3.Client, rnd *rand.Rand) {
	c := newKVClient(env, id, cli)
	var wg sync.WaitGroup
	defer wg.Wait()
	n := 0 // values are unique across relists (the at-most-once check counts them)
	for ctx.Err() == nil {
		list := c.Do(ctx, history.Request{Kind: history.Range, Key: PodPrefix, End: clientv3.GetPrefixRangeEnd(PodPrefix), Serializable: rnd.Intn(4) == 0})
		if list.Err != "" {
			pause(ctx, rnd, 300*time.Millisecond)
			continue
		}
		known := map[string]int64{}
		for _, kv := range list.KVs {
			known[kv.Key] = kv.ModRev
		}
		start := list.Rev + 1
		if rnd.Intn(3) == 0 {
			start = list.Rev - int64(rnd.Intn(40))
			if min := Compacted.Load() + 1; start < min {
				start = min
			}
		}
		w := &history.Watch{Client: id, Key: PodPrefix, End: clientv3.GetPrefixRangeEnd(PodPrefix), StartRev: start, PrevKV: true}
		switch rnd.Intn(6) {
		case 0:
			w.NoDelete = true
		case 1:
			w.NoPut, w.PrevKV = true, false
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		env.Rec.AddWatch(w)
		wg.Add(1)
		go func() { defer wg.Done(); Record(wctx, env, cli, w) }()
		until := time.Now().Add(time.Duration(2+rnd.Intn(5)) * time.Second)
		for ; ctx.Err() == nil && time.Now().Before(until); n++ {
			key := fmt.Sprintf("%s%d", PodPrefix, rnd.Intn(pods))
			val := fmt.Sprintf("k%d-%d", id, n)
			rev, exists := known[key]
			var req history.Request
			switch {
			case !exists:
				req = history.Request{Kind: history.Txn, Cmps: []history.Cmp{{Key: key, Target: "mod", Rev: 0}},
					Then: []history.Request{{Kind: history.Put, Key: key, Value: val}}, Else: []history.Request{{Kind: history.Range, Key: key}}}
			case rnd.Intn(4) == 0:
				req = history.Request{Kind: history.Txn, Cmps: []history.Cmp{{Key: key, Target: "mod", Rev: rev}},
					Then: []history.Request{{Kind: history.Delete, Key: key}}, Else: []history.Request{{Kind: history.Range, Key: key}}}
			default:
				req = history.Request{Kind: history.Txn, Cmps: []history.Cmp{{Key: key, Target: "mod", Rev: rev}},
					Then: []history.Request{{Kind: history.Put, Key: key, Value: val}}, Else: []history.Request{{Kind: history.Range, Key: key}}}
			}
			r := c.Do(ctx, req)
			if r.Err == "" {
				switch {
				case r.Succeeded && req.Then[0].Kind == history.Delete:
					delete(known, key)
				case r.Succeeded:
					known[key] = r.Rev
				case len(r.Results) == 1 && len(r.Results[0].KVs) == 1:
					known[key] = r.Results[0].KVs[0].ModRev
				default:
					delete(known, key)
				}
			}
			if rnd.Intn(8) == 0 {
				pctx, pcancel := context.WithTimeout(wctx, time.Second)
				_ = cli.RequestProgress(pctx)
				pcancel()
			}
			pause(ctx, rnd, 30*time.Millisecond)
		}
		cancel()
	}
}

// Record follows one watch until ctx ends or the stream is cancelled,
// appending every response to w (nobody else touches w meanwhile).
func Record(ctx context.Context, env *Env, cli *clientv3.Client, w *history.Watch) {
	opts := []clientv3.OpOption{clientv3.WithRange(w.End), clientv3.WithRev(w.StartRev), clientv3.WithProgressNotify()}
	if w.PrevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if w.NoPut {
		opts = append(opts, clientv3.WithFilterPut())
	}
	if w.NoDelete {
		opts = append(opts, clientv3.WithFilterDelete())
	}
	for resp := range cli.Watch(ctx, w.Key, opts...) {
		r := history.WatchResp{Time: env.Now(), Rev: resp.Header.Revision, Progress: resp.IsProgressNotify(),
			Canceled: resp.Canceled, CompactRev: resp.CompactRevision}
		if err := resp.Err(); err != nil {
			r.Err = err.Error()
		}
		for _, ev := range resp.Events {
			r.Events = append(r.Events, EventOf(ev))
		}
		w.Resps = append(w.Resps, r)
	}
}

// EventOf converts a clientv3 event.
func EventOf(ev *clientv3.Event) history.Event {
	out := history.Event{Delete: ev.Type == mvccpb.DELETE, KV: kvOf(ev.Kv)}
	if ev.PrevKv != nil {
		p := kvOf(ev.PrevKv)
		out.Prev = &p
	}
	return out
}

func kvOf(kv *mvccpb.KeyValue) history.KV {
	return history.KV{Key: string(kv.Key), Value: string(kv.Value), ModRev: kv.ModRevision, CreateRev: kv.CreateRevision, Version: kv.Version, Lease: kv.Lease}
}

// RunCompactor compacts as the apiserver does: every few seconds a Txn on
// CompactKey guarded by its version, and when it wins, a Compact to the
// revision it stored the round before (never beyond limit()).
func RunCompactor(ctx context.Context, env *Env, id int, cli *clientv3.Client, rnd *rand.Rand, every time.Duration, limit func() int64) {
	c := newKVClient(env, id, cli)
	var version, prev int64
	for n := 0; ctx.Err() == nil; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		r := c.Do(ctx, history.Request{Kind: history.Txn, Cmps: []history.Cmp{{Key: CompactKey, Target: "version", Rev: version}},
			Then: []history.Request{{Kind: history.Put, Key: CompactKey, Value: fmt.Sprintf("compact%d-%d", id, n)}},
			Else: []history.Request{{Kind: history.Range, Key: CompactKey}}})
		if r.Err != "" {
			continue
		}
		if !r.Succeeded {
			if len(r.Results) == 1 && len(r.Results[0].KVs) == 1 {
				version = r.Results[0].KVs[0].Version
			}
			continue
		}
		version++
		if target := min(prev, limit()); target > Compacted.Load() {
			if err := Compact(ctx, env, cli, target); err == nil {
				Compacted.Store(target)
			}
		}
		prev = r.Rev
	}
}

// Compact compacts the store to rev through the client's connection.
func Compact(ctx context.Context, env *Env, cli *clientv3.Client, rev int64) error {
	ctx, cancel := context.WithTimeout(ctx, env.OpTimeout)
	defer cancel()
	env.Rec.AddCompaction(history.Compaction{Rev: rev, Call: env.Now()})
	_, err := pb.NewKVClient(cli.ActiveConnection()).Compact(ctx, &pb.CompactionRequest{Revision: rev})
	return err
}
