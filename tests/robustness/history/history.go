// Package history holds what a robustness run records: every KV request and
// its answer with call and return times, every watch stream as it arrived,
// every lease's keep-alives, the members' own event log, and the fault log.
package history

import "sync"

// Kind names a KV operation.
type Kind string

// The KV operations the clients issue.
const (
	Range       Kind = "range"
	Put         Kind = "put"
	Delete      Kind = "delete"
	Txn         Kind = "txn"
	LeaseGrant  Kind = "lease-grant"
	LeaseRevoke Kind = "lease-revoke"
	// LeaseExpire is not a request: a lease client saw its lease gone
	// without revoking it, somewhere between Call and Return.
	LeaseExpire Kind = "lease-expire"
)

// KV is one key's stored value.
type KV struct {
	Key, Value                 string
	ModRev, CreateRev, Version int64
	Lease                      int64
}

// Cmp is a Txn compare: target (mod, create, version, value) of Key equals Rev or Value.
type Cmp struct {
	Key, Target, Value string
	Rev                int64
}

// Request is a KV request (Then/Else/Cmps only for Txn).
type Request struct {
	Kind         Kind
	Key, End     string // End "" is the single key Key
	Value        string
	Lease, TTL   int64
	Serializable bool
	Cmps         []Cmp
	Then, Else   []Request
}

// Response is an answer; Err != "" means the request failed and may or may not
// have taken effect.
type Response struct {
	Err       string
	Rev       int64
	KVs       []KV
	Count     int64
	Deleted   int64
	Succeeded bool
	Results   []Response
}

// Op is one request with its answer. Call and Return are nanoseconds since the run began.
type Op struct {
	Client       int
	Proxy        string // the proxy that answered (host:port), "" if unknown
	Epoch        int    // that proxy's incarnation when the request was sent
	Req          Request
	Resp         Response
	Call, Return int64
}

// Event is a watch event.
type Event struct {
	Delete bool
	KV     KV
	Prev   *KV
}

// WatchResp is one response on a watch stream.
type WatchResp struct {
	Time       int64
	Rev        int64 // header revision
	Events     []Event
	Progress   bool // a progress notification (no events)
	Canceled   bool
	CompactRev int64
	Err        string
}

// Watch is one watch stream through the proxy and what it received in order.
type Watch struct {
	Client          int
	Key, End        string
	StartRev        int64
	PrevKV          bool
	NoPut, NoDelete bool
	Resps           []WatchResp
}

// KeepAlive is one keep-alive of a lease: TTL is the answer's, Err a failure.
type KeepAlive struct {
	Call, Return int64
	TTL          int64
	Err          string
}

// Lease is one lease's life as its client saw it.
type Lease struct {
	ID, TTL    int64
	Granted    int64 // return time of the grant
	KeepAlives []KeepAlive
	// GoneAt is when the client first learnt the lease no longer existed
	// without having revoked it (0 if never).
	GoneAt int64
}

// Fault is one injected fault, logged.
type Fault struct {
	Name, Target string
	Start, End   int64
	Err          string
}

// Compaction is one compaction request (it may have happened even if it failed).
type Compaction struct {
	Rev, Call int64
}

// Recorder collects a run's history from many goroutines.
type Recorder struct {
	mu          sync.Mutex
	Ops         []Op
	Watch       []*Watch
	Leases      []*Lease
	Faults      []Fault
	Compactions []Compaction
}

// AddOp records a finished request.
func (r *Recorder) AddOp(op Op) { r.mu.Lock(); r.Ops = append(r.Ops, op); r.mu.Unlock() }

// AddWatch registers a watch stream (its responses are appended by its owner only).
func (r *Recorder) AddWatch(w *Watch) { r.mu.Lock(); r.Watch = append(r.Watch, w); r.mu.Unlock() }

// AddLease registers a lease (filled in by its owner only).
func (r *Recorder) AddLease(l *Lease) { r.mu.Lock(); r.Leases = append(r.Leases, l); r.mu.Unlock() }

// AddCompaction logs a compaction request.
func (r *Recorder) AddCompaction(c Compaction) {
	r.mu.Lock()
	r.Compactions = append(r.Compactions, c)
	r.mu.Unlock()
}

// AddFault logs a fault.
func (r *Recorder) AddFault(f Fault) { r.mu.Lock(); r.Faults = append(r.Faults, f); r.mu.Unlock() }
