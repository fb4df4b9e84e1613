package checker

import (
	"fmt"
	"sort"

	"etcd-grpc-proxy.test/robustness/history"
)

// Serializable checks serializable reads: never behind what the same proxy
// (incarnation) had already answered before the read was sent, never behind
// the client's own acknowledged writes, and equal to the members' state at
// the revision the read claims (truth is the members' own event log).
func Serializable(ops []history.Op, truth []history.Event, v Violations) {
	v.Touch(SerialMonotonic)
	v.Touch(SerialOwnWrites)
	v.Touch(SerialCorrect)
	type proxyKey struct {
		addr  string
		epoch int
	}
	byReturn := append([]history.Op(nil), ops...)
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	var reads []history.Op
	for _, op := range ops {
		if op.Req.Kind == history.Range && op.Req.Serializable && op.Resp.Err == "" {
			reads = append(reads, op)
		}
	}
	sort.Slice(reads, func(i, j int) bool { return reads[i].Call < reads[j].Call })
	proxyMax := map[proxyKey]int64{}
	ownMax := map[int]int64{}
	j := 0
	for _, r := range reads {
		for ; j < len(byReturn) && byReturn[j].Return < r.Call; j++ {
			o := byReturn[j]
			if o.Resp.Err != "" {
				continue
			}
			k := proxyKey{o.Proxy, o.Epoch}
			if o.Proxy != "" && o.Resp.Rev > proxyMax[k] {
				proxyMax[k] = o.Resp.Rev
			}
			if !isRead(o.Req) && o.Resp.Rev > ownMax[o.Client] {
				ownMax[o.Client] = o.Resp.Rev
			}
		}
		if m := proxyMax[proxyKey{r.Proxy, r.Epoch}]; r.Proxy != "" && r.Resp.Rev < m {
			v.Add(SerialMonotonic, fmt.Sprintf("client %d: serializable range %q at rev %d from %s after it answered rev %d", r.Client, r.Req.Key, r.Resp.Rev, r.Proxy, m))
		}
		if m := ownMax[r.Client]; r.Resp.Rev < m {
			v.Add(SerialOwnWrites, fmt.Sprintf("client %d: serializable range %q at rev %d after its own write at rev %d", r.Client, r.Req.Key, r.Resp.Rev, m))
		}
	}
	// Replay the members' log in revision order, checking each read at its revision.
	sort.SliceStable(reads, func(i, j int) bool { return reads[i].Resp.Rev < reads[j].Resp.Rev })
	st := state{kvs: map[string]history.KV{}}
	e := 0
	for _, r := range reads {
		for ; e < len(truth) && truth[e].KV.ModRev <= r.Resp.Rev; e++ {
			ev := truth[e]
			if ev.Delete {
				delete(st.kvs, ev.KV.Key)
			} else {
				st.kvs[ev.KV.Key] = ev.KV
			}
		}
		want := st.rangeKVs(r.Req.Key, r.Req.End)
		if !sameKVs(want, r.Resp.KVs) {
			v.Add(SerialCorrect, fmt.Sprintf("client %d: serializable range %q..%q at rev %d answered %v, members had %v", r.Client, r.Req.Key, r.Req.End, r.Resp.Rev, r.Resp.KVs, want))
		}
	}
}

func sameKVs(a, b []history.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
