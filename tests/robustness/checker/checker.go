// Package checker validates a recorded history: linearizability of the KV
// operations (porcupine), serializable reads, watch guarantees, leases,
// acknowledged writes, writes applied at most once. Each check returns its
// violations, described.
package checker

import (
	"math"
	"time"

	"github.com/anishathalye/porcupine"

	"etcd-grpc-proxy.test/robustness/history"
)

// Violations maps a guarantee's name to what broke it (an empty slice means checked and held).
type Violations map[string][]string

// Add records one violation of guarantee g (detail is kept for the first few only).
func (v Violations) Add(g, detail string) { v[g] = append(v[g], detail) }

// Touch marks guarantee g as checked.
func (v Violations) Touch(g string) {
	if _, ok := v[g]; !ok {
		v[g] = nil
	}
}

// Guarantee names, as the report lists them.
const (
	Linearizable     = "kv: linearizable"
	LinearizeUnknown = "kv: linearizability check timed out"
	SerialMonotonic  = "serializable: not behind this proxy's earlier answers"
	SerialOwnWrites  = "serializable: not behind own acknowledged writes"
	SerialCorrect    = "serializable: equals the members' state at its revision"
	WatchOrdered     = "watch: ordered"
	WatchUnique      = "watch: unique"
	WatchAtomic      = "watch: atomic"
	WatchBookmark    = "watch: bookmarkable"
	WatchReliable    = "watch: reliable"
	WatchResumable   = "watch: resumable"
	WatchPrevKV      = "watch: prev_kv and filters as asked"
	LeaseAlive       = "lease: none expires while kept alive"
	WritesKept       = "writes: none acknowledged lost"
	WrittenOnce      = "writes: each applied at most once"
	HashKVEqual      = "hashkv: equal on every member"
)

// Linearizability checks the linearizable KV operations with porcupine;
// failed writes may have happened (they return at infinity), failed and
// serializable reads are left out. initRev is the store's revision before
// the first operation (the key space being empty).
func Linearizability(ops []history.Op, initRev int64, timeout time.Duration, v Violations) {
	v.Touch(Linearizable)
	var hist []porcupine.Operation
	for _, op := range ops {
		if isRead(op.Req) && (op.Resp.Err != "" || op.Req.Serializable) {
			continue
		}
		ret := op.Return
		if op.Resp.Err != "" {
			ret = math.MaxInt64
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op.Req, Output: op.Resp, Call: op.Call, Return: ret})
	}
	model := porcupine.NondeterministicModel{
		Init: func() []interface{} {
			return []interface{}{state{kvs: map[string]history.KV{}, leases: map[int64]bool{}, rev: initRev}}
		},
		Step:              step,
		Equal:             stateEqual,
		Hash:              stateHash,
		DescribeOperation: describe,
	}
	switch porcupine.CheckOperationsTimeout(model.ToModel(), hist, timeout) {
	case porcupine.Illegal:
		v.Add(Linearizable, "porcupine: the KV history has no linearization")
	case porcupine.Unknown:
		v.Add(LinearizeUnknown, "porcupine did not finish in "+timeout.String())
	}
}

// isRead says whether a request only reads.
func isRead(r history.Request) bool {
	if r.Kind == history.Range {
		return true
	}
	if r.Kind != history.Txn {
		return false
	}
	for _, s := range append(append([]history.Request(nil), r.Then...), r.Else...) {
		if !isRead(s) {
			return false
		}
	}
	return true
}
