package checker

import (
	"fmt"
	"sort"

	"etcd-grpc-proxy.test/robustness/history"
)

// AppliedOnce checks that no write was applied more than once. The traffic
// writes every value once, so a value that more revisions of the members'
// own log carry than requests wrote it was applied again: a write re-sent to
// another member after the first one had applied it and its answer was lost.
// Failed writes count too (they may have been applied, once). A Txn answered
// with the other branch than the one putting a value found in the log was
// executed twice as well: applied, then evaluated again (its compare failing
// on its own write).
func AppliedOnce(ops []history.Op, truth []history.Event, v Violations) {
	v.Touch(WrittenOnce)
	writers := map[string][]history.Op{}
	otherBranch := map[string]int{} // answers saying the branch putting the value did not run
	for _, op := range ops {
		for _, val := range putValues(op.Req) {
			writers[val] = append(writers[val], op)
		}
		if op.Req.Kind == history.Txn && op.Resp.Err == "" {
			skipped := op.Req.Else
			if !op.Resp.Succeeded {
				skipped = op.Req.Then
			}
			for _, s := range skipped {
				for _, val := range putValues(s) {
					otherBranch[val]++
				}
			}
		}
	}
	applied := map[string][]history.Event{}
	for _, ev := range truth {
		if !ev.Delete {
			applied[ev.KV.Value] = append(applied[ev.KV.Value], ev)
		}
	}
	var vals []string
	for val, evs := range applied {
		if w := writers[val]; len(w) > 0 && len(evs)+otherBranch[val] > len(w) {
			vals = append(vals, val)
		}
	}
	sort.Strings(vals)
	for _, val := range vals {
		var revs []int64
		for _, ev := range applied[val] {
			revs = append(revs, ev.KV.ModRev)
		}
		var by []string
		for _, op := range writers[val] {
			outcome := fmt.Sprintf("acknowledged at rev %d", op.Resp.Rev)
			switch {
			case op.Resp.Err != "":
				outcome = "failed: " + op.Resp.Err
			case op.Req.Kind == history.Txn:
				outcome += fmt.Sprintf(", succeeded %v", op.Resp.Succeeded)
			}
			by = append(by, fmt.Sprintf("client %d %s through %s at %.3fs, %s", op.Client, op.Req.Kind, op.Proxy, float64(op.Call)/1e9, outcome))
		}
		d := fmt.Sprintf("%q=%q written by %d request(s) (%v) is at revisions %v in the members' log", applied[val][0].KV.Key, val, len(by), by, revs)
		if n := otherBranch[val]; n > 0 {
			d += fmt.Sprintf(", and %d answer(s) say the branch putting it did not run", n)
		}
		v.Add(WrittenOnce, d)
	}
}

// putValues are the distinct values a request may put (both branches of a Txn).
func putValues(req history.Request) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(r history.Request)
	walk = func(r history.Request) {
		if r.Kind == history.Put && !seen[r.Value] {
			seen[r.Value] = true
			out = append(out, r.Value)
		}
		for _, s := range r.Then {
			walk(s)
		}
		for _, s := range r.Else {
			walk(s)
		}
	}
	walk(req)
	return out
}
