package checker

import (
	"testing"
	"time"

	h "etcd-grpc-proxy.test/robustness/history"
)

// Each test plants one violation in an otherwise valid history and expects
// exactly the guarantee it breaks to report it; the clean history passes.

func put(client int, key, val string, rev, call, ret int64) h.Op {
	return h.Op{Client: client, Proxy: "p", Req: h.Request{Kind: h.Put, Key: key, Value: val}, Resp: h.Response{Rev: rev}, Call: call, Return: ret}
}

func get(client int, key string, rev int64, kvs []h.KV, call, ret int64, serializable bool) h.Op {
	return h.Op{Client: client, Proxy: "p", Req: h.Request{Kind: h.Range, Key: key, Serializable: serializable},
		Resp: h.Response{Rev: rev, KVs: kvs, Count: int64(len(kvs))}, Call: call, Return: ret}
}

func kv(key, val string, mod, create, version int64) h.KV {
	return h.KV{Key: key, Value: val, ModRev: mod, CreateRev: create, Version: version}
}

// truth: x=a at 2, x=b at 3, y=c at 4, x deleted at 5.
func truth() []h.Event {
	return []h.Event{
		{KV: kv("x", "a", 2, 2, 1)},
		{KV: kv("x", "b", 3, 2, 2), Prev: ptr(kv("x", "a", 2, 2, 1))},
		{KV: kv("y", "c", 4, 4, 1)},
		{Delete: true, KV: h.KV{Key: "x", ModRev: 5}, Prev: ptr(kv("x", "b", 3, 2, 2))},
	}
}

func ptr(k h.KV) *h.KV { return &k }

func cleanOps() []h.Op {
	return []h.Op{
		put(1, "x", "a", 2, 10, 20),
		get(2, "x", 2, []h.KV{kv("x", "a", 2, 2, 1)}, 25, 30, false),
		put(1, "x", "b", 3, 40, 50),
		put(2, "y", "c", 4, 60, 70),
		get(1, "x", 4, []h.KV{kv("x", "b", 3, 2, 2)}, 80, 90, true),
		{Client: 1, Proxy: "p", Req: h.Request{Kind: h.Delete, Key: "x"}, Resp: h.Response{Rev: 5, Deleted: 1}, Call: 100, Return: 110},
		get(2, "x", 5, nil, 120, 130, false),
	}
}

func only(t *testing.T, v Violations, g string) {
	t.Helper()
	if len(v[g]) == 0 {
		t.Fatalf("%s: planted violation not caught (all: %v)", g, v)
	}
	for other, list := range v {
		if other != g && len(list) > 0 {
			t.Fatalf("%s also reported: %v", other, list)
		}
	}
}

func caught(t *testing.T, v Violations, g string) {
	t.Helper()
	if len(v[g]) == 0 {
		t.Fatalf("%s: planted violation not caught (all: %v)", g, v)
	}
}

func clean(t *testing.T, v Violations) {
	t.Helper()
	for g, list := range v {
		if len(list) > 0 {
			t.Fatalf("%s reported on a valid history: %v", g, list)
		}
	}
}

func TestCleanHistoryPasses(t *testing.T) {
	v := Violations{}
	Linearizability(cleanOps(), 1, time.Minute, v)
	Serializable(cleanOps(), truth(), v)
	Writes(cleanOps(), truth(), v)
	AppliedOnce(cleanOps(), truth(), v)
	clean(t, v)
}

func TestFailedWriteMayHaveHappened(t *testing.T) {
	for _, seen := range []bool{true, false} {
		ops := []h.Op{
			put(1, "x", "a", 2, 10, 20),
			{Client: 2, Req: h.Request{Kind: h.Put, Key: "x", Value: "lost?"}, Resp: h.Response{Err: "timeout"}, Call: 30, Return: 40},
		}
		if seen {
			ops = append(ops, get(1, "x", 3, []h.KV{kv("x", "lost?", 3, 2, 2)}, 50, 60, false))
		} else {
			ops = append(ops, get(1, "x", 2, []h.KV{kv("x", "a", 2, 2, 1)}, 50, 60, false))
		}
		v := Violations{}
		Linearizability(ops, 1, time.Minute, v)
		clean(t, v)
	}
}

func TestStaleReadIsNotLinearizable(t *testing.T) {
	ops := cleanOps()
	ops[4] = get(1, "x", 2, []h.KV{kv("x", "a", 2, 2, 1)}, 80, 90, false) // after x=b returned
	v := Violations{}
	Linearizability(ops, 1, time.Minute, v)
	only(t, v, Linearizable)
}

func TestLeaseExpiryIsModelled(t *testing.T) {
	ops := []h.Op{
		{Client: 1, Req: h.Request{Kind: h.LeaseGrant, Lease: 7, TTL: 5}, Resp: h.Response{Rev: 1}, Call: 1, Return: 2},
		{Client: 1, Req: h.Request{Kind: h.Put, Key: "l", Value: "v", Lease: 7}, Resp: h.Response{Rev: 2}, Call: 3, Return: 4},
		{Client: 1, Req: h.Request{Kind: h.LeaseExpire, Lease: 7}, Call: 5, Return: 8},
		get(2, "l", 3, nil, 9, 10, false),
	}
	v := Violations{}
	Linearizability(ops, 1, time.Minute, v)
	clean(t, v)
	ops[3] = get(2, "l", 3, []h.KV{{Key: "l", Value: "v", ModRev: 2, CreateRev: 2, Version: 1, Lease: 7}}, 9, 10, false)
	v = Violations{}
	Linearizability(ops, 1, time.Minute, v)
	only(t, v, Linearizable)
}

func TestSerializableWrongAtItsRevision(t *testing.T) {
	ops := cleanOps()
	ops[4] = get(1, "x", 4, []h.KV{kv("x", "a", 2, 2, 1)}, 80, 90, true)
	v := Violations{}
	Serializable(ops, truth(), v)
	if len(v[SerialCorrect]) == 0 {
		t.Fatalf("stale content at its revision not caught: %v", v)
	}
}

func TestSerializableGoingBackBehindTheProxy(t *testing.T) {
	// Client 2 reads x at rev 2 (value a) after the proxy answered client 1's
	// write of x=b at rev 3: the answer is stale at rev 3.
	ops := []h.Op{
		put(1, "x", "a", 2, 10, 20),
		put(1, "x", "b", 3, 40, 50),
		get(2, "x", 2, []h.KV{kv("x", "a", 2, 2, 1)}, 60, 70, true),
	}
	v := Violations{}
	Serializable(ops, truth(), v)
	only(t, v, SerialMonotonic)
}

func TestSerializableOldHeaderButCurrentIsFine(t *testing.T) {
	// A cached answer for y: its header revision is old but y is unchanged.
	ops := []h.Op{
		put(1, "y", "c", 4, 10, 20),
		{Client: 1, Proxy: "p", Req: h.Request{Kind: h.Delete, Key: "x"}, Resp: h.Response{Rev: 5, Deleted: 1}, Call: 30, Return: 40},
		get(1, "y", 4, []h.KV{kv("y", "c", 4, 4, 1)}, 50, 60, true),
	}
	v := Violations{}
	if n := Serializable(ops, truth(), v); n != 1 {
		t.Fatalf("header behind counted %d, want 1", n)
	}
	clean(t, v)
}

func TestSerializableBehindOwnWrite(t *testing.T) {
	// Through another proxy "q" client 1's write is unknown to "p": only
	// the own-writes rule applies to its own proxy, so plant it on "p" with a
	// read served by "p" answered from before the write.
	ops := []h.Op{
		put(1, "x", "b", 3, 40, 50),
		get(1, "x", 2, []h.KV{kv("x", "a", 2, 2, 1)}, 60, 70, true),
	}
	v := Violations{}
	Serializable(ops, truth(), v)
	if len(v[SerialOwnWrites]) == 0 {
		t.Fatalf("read behind own write not caught: %v", v)
	}
}

func TestLostWrite(t *testing.T) {
	ops := append(cleanOps(), put(1, "z", "acked", 6, 140, 150))
	v := Violations{}
	Writes(ops, truth(), v)
	only(t, v, WritesKept)
}

func TestWriteAppliedTwice(t *testing.T) {
	// y=c was applied at 4 and again at 6: its answer was lost and it was sent again.
	twice := append(truth(), h.Event{KV: kv("y", "c", 6, 4, 2), Prev: ptr(kv("y", "c", 4, 4, 1))})
	v := Violations{}
	Writes(cleanOps(), twice, v)
	AppliedOnce(cleanOps(), twice, v)
	only(t, v, WrittenOnce)
}

func TestWriteAppliedTwiceInATxnAfterAnError(t *testing.T) {
	// The client saw an error; the Txn's put was applied twice all the same.
	ops := append(cleanOps(), h.Op{Client: 3, Req: h.Request{Kind: h.Txn, Then: []h.Request{{Kind: h.Put, Key: "z", Value: "t"}}},
		Resp: h.Response{Err: "connection reset"}, Call: 140, Return: 150})
	twice := append(truth(), h.Event{KV: kv("z", "t", 6, 6, 1)}, h.Event{KV: kv("z", "t", 7, 6, 2), Prev: ptr(kv("z", "t", 6, 6, 1))})
	v := Violations{}
	AppliedOnce(ops, twice, v)
	only(t, v, WrittenOnce)
}

func TestTxnAppliedThenAnsweredAsFailedCompare(t *testing.T) {
	// z=t was put by the Txn at 6, yet the answer says its compare failed:
	// the Txn was evaluated a second time, after its own write.
	txn := h.Request{Kind: h.Txn, Cmps: []h.Cmp{{Key: "z", Target: "mod", Rev: 0}},
		Then: []h.Request{{Kind: h.Put, Key: "z", Value: "t"}}, Else: []h.Request{{Kind: h.Range, Key: "z"}}}
	once := append(truth(), h.Event{KV: kv("z", "t", 6, 6, 1)})
	v := Violations{}
	ok := h.Op{Client: 3, Req: txn, Resp: h.Response{Rev: 6, Succeeded: true}, Call: 140, Return: 150}
	AppliedOnce(append(cleanOps(), ok), once, v)
	clean(t, v)
	wrong := ok
	wrong.Resp = h.Response{Rev: 6, Succeeded: false, Results: []h.Response{{KVs: []h.KV{kv("z", "t", 6, 6, 1)}, Count: 1}}}
	AppliedOnce(append(cleanOps(), wrong), once, v)
	only(t, v, WrittenOnce)
}

func TestFailedWriteAppliedOnceIsFine(t *testing.T) {
	ops := append(cleanOps(), h.Op{Client: 3, Req: h.Request{Kind: h.Put, Key: "z", Value: "t"}, Resp: h.Response{Err: "timeout"}, Call: 140, Return: 150})
	once := append(truth(), h.Event{KV: kv("z", "t", 6, 6, 1)})
	v := Violations{}
	AppliedOnce(ops, once, v)
	clean(t, v)
}

func TestLeaseExpiredWhileKeptAlive(t *testing.T) {
	s := int64(time.Second)
	ok := &h.Lease{ID: 1, TTL: 5, Granted: 0, KeepAlives: []h.KeepAlive{{Call: 3 * s, Return: 3 * s, TTL: 5}}, GoneAt: 9 * s}
	bad := &h.Lease{ID: 2, TTL: 5, Granted: 0, KeepAlives: []h.KeepAlive{{Call: 3 * s, Return: 3 * s, TTL: 5}}, GoneAt: 6 * s}
	v := Violations{}
	Leases([]*h.Lease{ok}, time.Second, v)
	clean(t, v)
	Leases([]*h.Lease{bad}, time.Second, v)
	only(t, v, LeaseAlive)
}

// watch builds a watch on every key from start with the given responses.
func watch(start int64, prevKV bool, resps ...h.WatchResp) *h.Watch {
	return &h.Watch{Key: "\x00", End: "\x00", StartRev: start, PrevKV: prevKV, Resps: resps}
}

func evs(ids ...int) []h.Event {
	var out []h.Event
	for _, i := range ids {
		out = append(out, truth()[i])
	}
	return out
}

func noPrev(e []h.Event) []h.Event {
	out := append([]h.Event(nil), e...)
	for i := range out {
		out[i].Prev = nil
	}
	return out
}

func checkOne(w *h.Watch) Violations {
	v := Violations{}
	Watches([]*h.Watch{w}, truth(), nil, v)
	return v
}

func TestWatchClean(t *testing.T) {
	clean(t, checkOne(watch(2, true, h.WatchResp{Events: evs(0, 1)}, h.WatchResp{Progress: true, Rev: 3}, h.WatchResp{Events: evs(2, 3)})))
	clean(t, checkOne(watch(3, false, h.WatchResp{Events: noPrev(evs(1, 2))})))
}

func TestWatchOrdered(t *testing.T) {
	only(t, checkOne(watch(2, true, h.WatchResp{Events: evs(0)}, h.WatchResp{Events: evs(2)}, h.WatchResp{Events: evs(1)})), WatchOrdered)
}

func TestWatchUnique(t *testing.T) {
	// A duplicate in a later response also splits its revision.
	caught(t, checkOne(watch(2, true, h.WatchResp{Events: evs(0, 1)}, h.WatchResp{Events: evs(1)})), WatchUnique)
}

func TestWatchAtomic(t *testing.T) {
	two := []h.Event{{KV: kv("a", "1", 7, 7, 1)}, {KV: kv("b", "1", 7, 7, 1)}}
	tr := append(truth(), two...)
	v := Violations{}
	Watches([]*h.Watch{watch(7, true, h.WatchResp{Events: two[:1]}, h.WatchResp{Events: two[1:]})}, tr, nil, v)
	only(t, v, WatchAtomic)
}

func TestWatchBookmarkable(t *testing.T) {
	only(t, checkOne(watch(2, true, h.WatchResp{Events: evs(0)}, h.WatchResp{Progress: true, Rev: 3}, h.WatchResp{Events: evs(1)})), WatchBookmark)
}

func TestWatchReliable(t *testing.T) {
	only(t, checkOne(watch(2, true, h.WatchResp{Events: evs(0)}, h.WatchResp{Events: evs(2)})), WatchReliable)
}

func TestWatchResumable(t *testing.T) {
	// Starting late also leaves a gap.
	caught(t, checkOne(watch(3, true, h.WatchResp{Events: evs(2, 3)})), WatchResumable)
}

func TestWatchPrevKVAsAsked(t *testing.T) {
	only(t, checkOne(watch(2, true, h.WatchResp{Events: noPrev(evs(0, 1))})), WatchPrevKV)
	only(t, checkOne(watch(3, false, h.WatchResp{Events: evs(1)})), WatchPrevKV)
}

func TestWatchPrevKVMayBeCompactedAway(t *testing.T) {
	w := watch(3, true, h.WatchResp{Time: 100, Events: noPrev(evs(1))})
	v := Violations{}
	Watches([]*h.Watch{w}, truth(), []h.Compaction{{Rev: 3, Call: 90}}, v)
	clean(t, v)
	v = Violations{}
	Watches([]*h.Watch{w}, truth(), []h.Compaction{{Rev: 3, Call: 110}}, v)
	only(t, v, WatchPrevKV)
}

func TestWatchFilterAsAsked(t *testing.T) {
	w := watch(2, true, h.WatchResp{Events: evs(0, 1, 2, 3)})
	w.NoDelete = true
	only(t, checkOne(w), WatchPrevKV)
}

func TestHashKVDiffers(t *testing.T) {
	v := Violations{}
	HashKV(9, map[string]uint32{"m1": 1, "m2": 1, "m3": 1}, nil, v)
	clean(t, v)
	HashKV(9, map[string]uint32{"m1": 1, "m2": 2, "m3": 1}, nil, v)
	only(t, v, HashKVEqual)
}
