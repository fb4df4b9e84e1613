package checker

import (
	"fmt"
	"hash/fnv"
	"sort"

	"etcd-grpc-proxy.test/robustness/history"
)

// state is the model's key space at one revision. It is never mutated once
// built: every step copies it.
type state struct {
	rev    int64
	kvs    map[string]history.KV
	leases map[int64]bool
}

func (s state) clone() state {
	n := state{rev: s.rev, kvs: make(map[string]history.KV, len(s.kvs)), leases: make(map[int64]bool, len(s.leases))}
	for k, v := range s.kvs {
		n.kvs[k] = v
	}
	for k := range s.leases {
		n.leases[k] = true
	}
	return n
}

func inRange(key, from, end string) bool {
	if end == "" {
		return key == from
	}
	return key >= from && (end == "\x00" || key < end)
}

func (s state) rangeKVs(from, end string) []history.KV {
	var out []history.KV
	for k, v := range s.kvs {
		if inRange(k, from, end) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (s state) compare(c history.Cmp) bool {
	kv := s.kvs[c.Key] // absent: all zero, as etcd compares a missing key
	switch c.Target {
	case "mod":
		return kv.ModRev == c.Rev
	case "create":
		return kv.CreateRev == c.Rev
	case "version":
		return kv.Version == c.Rev
	case "value":
		_, ok := s.kvs[c.Key]
		return ok && kv.Value == c.Value
	}
	panic("unknown compare target " + c.Target)
}

// apply runs req on a copy of s (whose writes take revision s.rev+1) and
// returns the new state and the answer etcd gives.
func apply(s state, req history.Request) (state, history.Response) {
	n := s.clone()
	var resp history.Response
	changed := n.exec(req, s.rev+1, &resp)
	if changed {
		n.rev = s.rev + 1
	}
	resp.Rev = n.rev
	return n, resp
}

// exec applies one request in place at write revision rev, reporting whether it changed anything.
func (n *state) exec(req history.Request, rev int64, resp *history.Response) bool {
	switch req.Kind {
	case history.Range:
		resp.KVs = n.rangeKVs(req.Key, req.End)
		resp.Count = int64(len(resp.KVs))
		return false
	case history.Put:
		if req.Lease != 0 && !n.leases[req.Lease] {
			resp.Err = "lease not found"
			return false
		}
		old, ok := n.kvs[req.Key]
		kv := history.KV{Key: req.Key, Value: req.Value, ModRev: rev, CreateRev: rev, Version: 1, Lease: req.Lease}
		if ok {
			kv.CreateRev, kv.Version = old.CreateRev, old.Version+1
		}
		n.kvs[req.Key] = kv
		return true
	case history.Delete:
		for _, kv := range n.rangeKVs(req.Key, req.End) {
			delete(n.kvs, kv.Key)
			resp.Deleted++
		}
		return resp.Deleted > 0
	case history.Txn:
		ok := true
		for _, c := range req.Cmps {
			ok = ok && n.compare(c)
		}
		resp.Succeeded = ok
		branch := req.Then
		if !ok {
			branch = req.Else
		}
		changed := false
		for _, sub := range branch {
			var r history.Response
			changed = n.exec(sub, rev, &r) || changed
			resp.Results = append(resp.Results, r)
		}
		return changed
	case history.LeaseGrant:
		if n.leases[req.Lease] {
			resp.Err = "lease exists"
			return false
		}
		n.leases[req.Lease] = true
		return false
	case history.LeaseRevoke, history.LeaseExpire:
		if !n.leases[req.Lease] {
			resp.Err = "lease not found"
			return false
		}
		delete(n.leases, req.Lease)
		changed := false
		for k, kv := range n.kvs {
			if kv.Lease == req.Lease {
				delete(n.kvs, k)
				changed = true
			}
		}
		return changed
	}
	panic("unknown request kind " + string(req.Kind))
}

// matches says whether an observed answer is the one the model gives.
func matches(want, got history.Response) bool {
	if want.Err != "" || got.Rev != want.Rev || got.Succeeded != want.Succeeded || got.Deleted != want.Deleted {
		return false
	}
	if got.Count != want.Count || len(got.KVs) != len(want.KVs) || len(got.Results) != len(want.Results) {
		return false
	}
	for i := range got.KVs {
		if got.KVs[i] != want.KVs[i] {
			return false
		}
	}
	for i := range got.Results {
		w, g := want.Results[i], got.Results[i]
		w.Rev, g.Rev = 0, 0
		if !matches(w, g) {
			return false
		}
	}
	return true
}

// step is the nondeterministic model: a failed request may or may not have
// happened; a lease seen gone expired; anything else must answer as the model does.
func step(st interface{}, in interface{}, out interface{}) []interface{} {
	s, req, got := st.(state), in.(history.Request), out.(history.Response)
	n, want := apply(s, req)
	if req.Kind == history.LeaseGrant || req.Kind == history.LeaseRevoke {
		got.Rev = want.Rev // lease answers' header revision is not asserted
	}
	switch {
	case req.Kind == history.LeaseExpire:
		if want.Err != "" { // already revoked (a revoke that failed yet happened)
			return []interface{}{s}
		}
		return []interface{}{n}
	case got.Err != "":
		if want.Err != "" {
			return []interface{}{s}
		}
		return []interface{}{s, n}
	case matches(want, got):
		return []interface{}{n}
	}
	return nil
}

func stateEqual(a, b interface{}) bool {
	x, y := a.(state), b.(state)
	if x.rev != y.rev || len(x.kvs) != len(y.kvs) || len(x.leases) != len(y.leases) {
		return false
	}
	for k, v := range x.kvs {
		if y.kvs[k] != v {
			return false
		}
	}
	for k := range x.leases {
		if !y.leases[k] {
			return false
		}
	}
	return true
}

func stateHash(a interface{}) uint64 {
	s := a.(state)
	h := uint64(s.rev) * 1000003
	for k, v := range s.kvs {
		f := fnv.New64a()
		fmt.Fprintf(f, "%s=%s@%d", k, v.Value, v.ModRev)
		h += f.Sum64()
	}
	return h + uint64(len(s.leases))
}

func describe(in interface{}, out interface{}) string {
	req, resp := in.(history.Request), out.(history.Response)
	return fmt.Sprintf("%s %q..%q v=%q lease=%d cmps=%v -> rev=%d err=%q kvs=%v ok=%v del=%d",
		req.Kind, req.Key, req.End, req.Value, req.Lease, req.Cmps, resp.Rev, resp.Err, resp.KVs, resp.Succeeded, resp.Deleted)
}
