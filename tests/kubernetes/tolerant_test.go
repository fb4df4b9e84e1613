package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// While a member is added and another dies, etcd itself answers some
// requests with errors that say "not now" (the proposal was dropped, the
// request timed out, there is no leader, the connection went away). A
// client sees them whether it talks to etcd directly or through the proxy;
// Kubernetes' apiserver turns them into 5xx and its clients retry. The
// storage suites treat any error as a failure, so under the membership
// change the suites' clients get the tolerance below: reads are retried,
// writes whose outcome is unknown are resolved by reading the key back (as
// a retrying client must), and every such error is counted by kind, and
// must be one of transientKinds, the same set for both targets.

// raftProposalDropped is raft.ErrProposalDropped's text: etcd has no gRPC
// error of its own for it and sends it as codes.Unknown with this message.
const raftProposalDropped = "raft proposal dropped"

// transientKinds are the errors etcd documents for a cluster changing
// leader or membership, typed by rpctypes (the client turns the status
// into these values).
var transientKinds = []error{
	rpctypes.ErrNoLeader,
	rpctypes.ErrLeaderChanged,
	rpctypes.ErrStopped,
	rpctypes.ErrTimeout,
	rpctypes.ErrTimeoutDueToLeaderFail,
	rpctypes.ErrTimeoutDueToConnectionLost,
	rpctypes.ErrTimeoutWaitAppliedIndex,
	rpctypes.ErrUnhealthy,
	rpctypes.ErrTooManyRequests,
}

// transientKind names err's kind when it is one of the transient errors:
// an rpctypes value above (as a gRPC status: with etcd's code for it),
// raft's dropped proposal, or a gRPC Unavailable of the connection (a
// member killed, a transport closing).
func transientKind(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	typed := rpctypes.Error(err)
	if s, ok := status.FromError(err); ok {
		if e, known := typed.(rpctypes.EtcdError); known && e.Code() != s.Code() {
			return "", false
		}
	}
	for _, k := range transientKinds {
		if errors.Is(err, k) || errors.Is(typed, k) {
			return rpctypes.ErrorDesc(k), true
		}
	}
	s, ok := status.FromError(err)
	if !ok {
		return "", false
	}
	switch {
	case s.Code() == codes.Unknown && s.Message() == raftProposalDropped:
		return raftProposalDropped, true
	case s.Code() == codes.Unavailable:
		return "Unavailable (connection)", true
	}
	return "", false
}

// errorKind names any error for the record: its transient kind, else its
// gRPC code and message, else its text.
func errorKind(err error) string {
	if k, ok := transientKind(err); ok {
		return k
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return rpctypes.ErrorDesc(err)
}

// checkCodes is a gRPC interceptor recording, as an error of its own kind,
// every answer whose message is one of etcd's errors but whose code is not
// the one etcd sends with it (the client turns both into the same value).
func (l *errLog) checkCodes(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if s, ok := status.FromError(err); ok && err != nil {
		if e, known := rpctypes.Error(err).(rpctypes.EtcdError); known && e.Code() != s.Code() {
			l.mu.Lock()
			l.other[fmt.Sprintf("%s: %q with code %s, etcd sends %s", method, s.Message(), s.Code(), e.Code())]++
			l.mu.Unlock()
		}
	}
	return err
}

// errLog counts, per kind, the errors a target's clients got from etcd.
type errLog struct {
	mu        sync.Mutex
	transient map[string]int
	other     map[string]int
}

func newErrLog() *errLog {
	return &errLog{transient: map[string]int{}, other: map[string]int{}}
}

func (l *errLog) record(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return // the caller gave up: not etcd's answer
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if k, ok := transientKind(err); ok {
		l.transient[k]++
	} else {
		l.other[errorKind(err)]++
	}
}

func (l *errLog) snapshot() (transient, other map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	transient, other = map[string]int{}, map[string]int{}
	for k, n := range l.transient {
		transient[k] = n
	}
	for k, n := range l.other {
		other[k] = n
	}
	return transient, other
}

func (l *errLog) String() string {
	t, o := l.snapshot()
	return fmt.Sprintf("transient %s; other %s", kinds(t), kinds(o))
}

func kinds(m map[string]int) string {
	var s []string
	for k, n := range m {
		s = append(s, fmt.Sprintf("%q×%d", k, n))
	}
	sort.Strings(s)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// retryBudget bounds how long one request is retried: the change (member
// add, new member catching up, leader handed over, member killed) is over
// well within it even on a loaded machine.
const retryBudget = 60 * time.Second

// retry runs op until it returns no error or a non-transient one, the
// budget is spent, or ctx is done; every error is recorded.
func retry[T any](ctx context.Context, log *errLog, op func() (T, error)) (T, error) {
	deadline := time.Now().Add(retryBudget)
	backoff := 50 * time.Millisecond
	for {
		v, err := op()
		log.record(ctx, err)
		if _, transient := transientKind(err); !transient || ctx.Err() != nil || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

// tolerate gives kc the tolerance: its KV (which the Kubernetes methods
// use too) retries reads and records errors, its leases are retried, and
// kc.Kubernetes resolves optimistic writes whose outcome is unknown.
func tolerate(kc *kubernetes.Client, log *errLog) {
	kc.Client.KV = &tolerantKV{KV: kc.Client.KV, log: log}
	kc.Client.Lease = &tolerantLease{Lease: kc.Client.Lease, log: log}
	kc.Kubernetes = &tolerantKubernetes{Interface: kc.Kubernetes, watcher: kc.Client.Watcher, log: log}
}

type tolerantKV struct {
	clientv3.KV
	log *errLog
}

func (kv *tolerantKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	return retry(ctx, kv.log, func() (*clientv3.GetResponse, error) { return kv.KV.Get(ctx, key, opts...) })
}

func (kv *tolerantKV) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	return retry(ctx, kv.log, func() (clientv3.GetStreamChan, error) { return kv.KV.GetStream(ctx, key, opts...) })
}

// Put is retried: the suites put a constant value (increaseRV), so a
// second application only adds a revision, which is what they ask for.
func (kv *tolerantKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return retry(ctx, kv.log, func() (*clientv3.PutResponse, error) { return kv.KV.Put(ctx, key, val, opts...) })
}

func (kv *tolerantKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	resp, err := kv.KV.Delete(ctx, key, opts...)
	kv.log.record(ctx, err)
	return resp, err
}

func (kv *tolerantKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	resp, err := kv.KV.Compact(ctx, rev, opts...)
	kv.log.record(ctx, err)
	return resp, err
}

func (kv *tolerantKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	if op.IsGet() {
		return retry(ctx, kv.log, func() (clientv3.OpResponse, error) { return kv.KV.Do(ctx, op) })
	}
	resp, err := kv.KV.Do(ctx, op)
	kv.log.record(ctx, err)
	return resp, err
}

func (kv *tolerantKV) Txn(ctx context.Context) clientv3.Txn {
	return &tolerantTxn{kv: kv, ctx: ctx}
}

// tolerantTxn records a Txn and commits it on the underlying KV; a Txn of
// reads only is retried, one that writes is not (its outcome is resolved,
// where it matters, by tolerantKubernetes).
type tolerantTxn struct {
	kv       *tolerantKV
	ctx      context.Context
	cmps     []clientv3.Cmp
	thenOps  []clientv3.Op
	elseOps  []clientv3.Op
	readOnly bool
}

func (t *tolerantTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.cmps = append(t.cmps, cs...); return t }
func (t *tolerantTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.thenOps = append(t.thenOps, ops...)
	return t
}
func (t *tolerantTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.elseOps = append(t.elseOps, ops...)
	return t
}

func (t *tolerantTxn) Commit() (*clientv3.TxnResponse, error) {
	commit := func() (*clientv3.TxnResponse, error) {
		return t.kv.KV.Txn(t.ctx).If(t.cmps...).Then(t.thenOps...).Else(t.elseOps...).Commit()
	}
	for _, op := range append(append([]clientv3.Op(nil), t.thenOps...), t.elseOps...) {
		if !op.IsGet() {
			resp, err := commit()
			t.kv.log.record(t.ctx, err)
			return resp, err
		}
	}
	return retry(t.ctx, t.kv.log, commit)
}

type tolerantLease struct {
	clientv3.Lease
	log *errLog
}

// Grant is retried: a lease granted by an attempt that seemed to fail is
// never used and expires.
func (l *tolerantLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	return retry(ctx, l.log, func() (*clientv3.LeaseGrantResponse, error) { return l.Lease.Grant(ctx, ttl) })
}

// tolerantKubernetes resolves Kubernetes' optimistic writes (a Txn on the
// key's mod revision) that end in a transient error: the write may or may
// not have been applied, so the key is read back. Unchanged since the
// expected revision: not applied (yet), the write is sent again (the
// compare lets at most one of the two apply). Changed, by this write: it
// succeeded, at the revision that changed the key. Changed by another
// write: the answer is the conflict the compare would have given.
type tolerantKubernetes struct {
	kubernetes.Interface
	watcher clientv3.Watcher
	log     *errLog
}

func (k *tolerantKubernetes) OptimisticPut(ctx context.Context, key string, value []byte, expectedRevision int64, opts kubernetes.PutOptions) (kubernetes.PutResponse, error) {
	deadline := time.Now().Add(retryBudget)
	ambiguous := false
	for {
		resp, err := k.Interface.OptimisticPut(ctx, key, value, expectedRevision, opts)
		if err == nil && (resp.Succeeded || !ambiguous) {
			return resp, nil
		}
		if err != nil {
			if _, transient := transientKind(err); !transient || ctx.Err() != nil || time.Now().After(deadline) {
				return resp, err
			}
		}
		// Either the write's outcome is unknown, or the compare failed
		// after an earlier attempt's outcome was unknown (that attempt
		// may be what changed the key): read the key back.
		ambiguous = true
		cur, gerr := k.Interface.Get(ctx, key, kubernetes.GetOptions{})
		if gerr != nil {
			return resp, gerr
		}
		switch {
		case cur.KV != nil && cur.KV.ModRevision > expectedRevision && bytes.Equal(cur.KV.Value, value) && cur.KV.Lease == int64(opts.LeaseID):
			return kubernetes.PutResponse{Succeeded: true, Revision: cur.KV.ModRevision}, nil
		case expectedRevision == 0 && cur.KV == nil, cur.KV != nil && cur.KV.ModRevision == expectedRevision:
			continue // not applied: send it again
		default:
			out := kubernetes.PutResponse{Revision: cur.Revision}
			if opts.GetOnFailure {
				out.KV = cur.KV
			}
			return out, nil
		}
	}
}

func (k *tolerantKubernetes) OptimisticDelete(ctx context.Context, key string, expectedRevision int64, opts kubernetes.DeleteOptions) (kubernetes.DeleteResponse, error) {
	deadline := time.Now().Add(retryBudget)
	ambiguous := false
	for {
		resp, err := k.Interface.OptimisticDelete(ctx, key, expectedRevision, opts)
		if err == nil && (resp.Succeeded || !ambiguous) {
			return resp, nil
		}
		if err != nil {
			if _, transient := transientKind(err); !transient || ctx.Err() != nil || time.Now().After(deadline) {
				return resp, err
			}
		}
		ambiguous = true
		cur, gerr := k.Interface.Get(ctx, key, kubernetes.GetOptions{})
		if gerr != nil {
			return resp, gerr
		}
		if cur.KV != nil && cur.KV.ModRevision == expectedRevision {
			continue // not applied: send it again
		}
		// The key changed: the first change after expectedRevision says
		// whether it was this delete, and at which revision.
		ev, werr := k.firstChange(ctx, key, expectedRevision)
		if werr != nil {
			return resp, fmt.Errorf("resolving a delete whose outcome is unknown (%v): %w", err, werr)
		}
		if ev.Type == mvccpb.DELETE {
			return kubernetes.DeleteResponse{Succeeded: true, Revision: ev.Kv.ModRevision}, nil
		}
		out := kubernetes.DeleteResponse{Revision: cur.Revision}
		if opts.GetOnFailure {
			out.KV = cur.KV
		}
		return out, nil
	}
}

// firstChange is the first event on key after revision rev.
func (k *tolerantKubernetes) firstChange(ctx context.Context, key string, rev int64) (*clientv3.Event, error) {
	deadline := time.Now().Add(retryBudget)
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		for wr := range k.watcher.Watch(wctx, key, clientv3.WithRev(rev+1)) {
			if err := wr.Err(); err != nil {
				k.log.record(wctx, err)
				break
			}
			if len(wr.Events) > 0 {
				cancel()
				return wr.Events[0], nil
			}
		}
		cancel()
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("no change of %s after revision %d seen", key, rev)
		}
	}
}
