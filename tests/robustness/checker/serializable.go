package checker

import (
	"fmt"
	"sort"

	"etcd-grpc-proxy.test/robustness/history"
)

// Serializable checks serializable reads against the members' own event
// log (truth):
//   - the answer equals the members' state at the revision it claims;
//   - it is not behind what the same proxy (incarnation) had answered before
//     the read was sent, nor behind the client's own writes that proxy
//     acknowledged: the answer must still be the members' state at that
//     revision. A cached answer may carry the older revision it was read at
//     while still being current; that is counted in HeaderBehind, not as a
//     violation.
func Serializable(ops []history.Op, truth []history.Event, v Violations) (headerBehind int) {
	v.Touch(SerialMonotonic)
	v.Touch(SerialOwnWrites)
	v.Touch(SerialCorrect)
	type proxyKey struct {
		addr  string
		epoch int
	}
	type own struct {
		client int
		proxy  proxyKey
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
	proxyWhy := map[proxyKey]string{}
	ownMax := map[own]int64{}
	var checks []revCheck
	j := 0
	for _, r := range reads {
		for ; j < len(byReturn) && byReturn[j].Return < r.Call; j++ {
			o := byReturn[j]
			if o.Resp.Err != "" || o.Proxy == "" {
				continue
			}
			k := proxyKey{o.Proxy, o.Epoch}
			if o.Resp.Rev > proxyMax[k] {
				proxyMax[k] = o.Resp.Rev
				proxyWhy[k] = fmt.Sprintf("%s %q by client %d at %.3fs", o.Req.Kind, o.Req.Key, o.Client, float64(o.Return)/1e9)
			}
			if ok := (own{o.Client, k}); !isRead(o.Req) && o.Resp.Rev > ownMax[ok] {
				ownMax[ok] = o.Resp.Rev
			}
		}
		desc := fmt.Sprintf("client %d: serializable range %q..%q (at %.3fs, from %s) answered rev %d %v", r.Client, r.Req.Key, r.Req.End, float64(r.Call)/1e9, r.Proxy, r.Resp.Rev, r.Resp.KVs)
		checks = append(checks, revCheck{r, r.Resp.Rev, SerialCorrect, desc})
		k := proxyKey{r.Proxy, r.Epoch}
		if m := proxyMax[k]; r.Proxy != "" && r.Resp.Rev < m {
			headerBehind++
			checks = append(checks, revCheck{r, m, SerialMonotonic, desc + fmt.Sprintf(" after the proxy answered rev %d (%s)", m, proxyWhy[k])})
		}
		if m := ownMax[own{r.Client, k}]; r.Resp.Rev < m {
			checks = append(checks, revCheck{r, m, SerialOwnWrites, desc + fmt.Sprintf(" after its own write there at rev %d", m)})
		}
	}
	// Replay the members' log in revision order, checking each read at its revision.
	sort.SliceStable(checks, func(i, j int) bool { return checks[i].rev < checks[j].rev })
	st := state{kvs: map[string]history.KV{}}
	e := 0
	for _, c := range checks {
		for ; e < len(truth) && truth[e].KV.ModRev <= c.rev; e++ {
			ev := truth[e]
			if ev.Delete {
				delete(st.kvs, ev.KV.Key)
			} else {
				st.kvs[ev.KV.Key] = ev.KV
			}
		}
		if want := st.rangeKVs(c.op.Req.Key, c.op.Req.End); !sameKVs(want, c.op.Resp.KVs) {
			v.Add(c.guarantee, fmt.Sprintf("%s; the members had %v at rev %d", c.desc, want, c.rev))
		}
	}
	return headerBehind
}

// revCheck asks that a read's answer be the members' state at rev.
type revCheck struct {
	op        history.Op
	rev       int64
	guarantee string
	desc      string
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
