package checker

import (
	"fmt"
	"time"

	"etcd-grpc-proxy.test/robustness/history"
)

// Leases checks that no lease was found gone while a keep-alive answered
// through the proxy still promised it life: a lease whose keep-alive
// returned at t with TTL s must exist until t+s (less slack for clocks).
func Leases(leases []*history.Lease, slack time.Duration, v Violations) {
	v.Touch(LeaseAlive)
	for _, l := range leases {
		if l.GoneAt == 0 {
			continue
		}
		promised := l.Granted + l.TTL*int64(time.Second)
		for _, ka := range l.KeepAlives {
			if ka.Err == "" && ka.TTL > 0 && ka.Return <= l.GoneAt {
				if until := ka.Return + ka.TTL*int64(time.Second); until > promised {
					promised = until
				}
			}
		}
		if l.GoneAt+int64(slack) < promised {
			v.Add(LeaseAlive, fmt.Sprintf("lease %x (TTL %ds) gone at %.3fs, kept alive until %.3fs", l.ID, l.TTL, float64(l.GoneAt)/1e9, float64(promised)/1e9))
		}
	}
}

// Writes checks that every acknowledged write is in the members' own log at
// the revision it was acknowledged with, with the value written.
func Writes(ops []history.Op, truth []history.Event, v Violations) {
	v.Touch(WritesKept)
	at := map[evKey]history.Event{}
	for _, ev := range truth {
		at[evKey{ev.KV.ModRev, ev.KV.Key}] = ev
	}
	for _, op := range ops {
		if op.Resp.Err != "" {
			continue
		}
		for _, w := range writesOf(op.Req, op.Resp) {
			ev, ok := at[evKey{op.Resp.Rev, w.Key}]
			if !ok || ev.Delete != (w.Kind == history.Delete) || (w.Kind == history.Put && ev.KV.Value != w.Value) {
				v.Add(WritesKept, fmt.Sprintf("client %d: %s %q=%q acknowledged at rev %d, members' log has %+v (found %v)", op.Client, w.Kind, w.Key, w.Value, op.Resp.Rev, ev, ok))
			}
		}
	}
}

// writesOf lists the single-key puts and deletes an acknowledged request made
// (a delete only when it deleted something; prefix deletes are left out).
func writesOf(req history.Request, resp history.Response) []history.Request {
	switch req.Kind {
	case history.Put:
		return []history.Request{req}
	case history.Delete:
		if req.End == "" && resp.Deleted == 1 {
			return []history.Request{req}
		}
	case history.Txn:
		branch := req.Then
		if !resp.Succeeded {
			branch = req.Else
		}
		var out []history.Request
		for i, s := range branch {
			if i < len(resp.Results) {
				out = append(out, writesOf(s, resp.Results[i])...)
			}
		}
		return out
	}
	return nil
}
