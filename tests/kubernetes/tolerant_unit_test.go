package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTransientKind: what the membership test tolerates, and what not.
func TestTransientKind(t *testing.T) {
	for _, tc := range []struct {
		err       error
		transient bool
	}{
		{rpctypes.ErrGRPCTimeout, true},
		{rpctypes.ErrTimeout, true},
		{fmt.Errorf("update: %w", rpctypes.ErrTimeoutDueToLeaderFail), true},
		{rpctypes.ErrTimeoutDueToConnectionLost, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrLeaderChanged, true},
		{status.Error(codes.Unknown, "raft proposal dropped"), true},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), true},
		{rpctypes.ErrFutureRev, false},
		{rpctypes.ErrCompacted, false},
		{rpctypes.ErrKeyNotFound, false},
		{status.Error(codes.Unknown, "raft proposal dropped, and more"), false},
		{status.Error(codes.Internal, "etcdserver: request timed out"), false},
		{context.Canceled, false},
		{errors.New("request timed out"), false},
	} {
		if _, got := transientKind(tc.err); got != tc.transient {
			t.Errorf("%v (%T): transient %v, want %v", tc.err, tc.err, got, tc.transient)
		}
	}
}

// fakeKV is one key's optimistic writes, failing as told.
type fakeKV struct {
	kubernetes.Interface
	rev int64
	kv  *mvccpb.KeyValue
	// fail says, per attempt, whether the write is applied and whether
	// the answer is a transient error.
	fail []struct{ apply, err bool }
}

func (f *fakeKV) Get(context.Context, string, kubernetes.GetOptions) (kubernetes.GetResponse, error) {
	return kubernetes.GetResponse{KV: f.kv, Revision: f.rev}, nil
}

func (f *fakeKV) OptimisticPut(_ context.Context, key string, value []byte, expected int64, _ kubernetes.PutOptions) (kubernetes.PutResponse, error) {
	apply, fail := true, false
	if len(f.fail) > 0 {
		apply, fail = f.fail[0].apply, f.fail[0].err
		f.fail = f.fail[1:]
	}
	cur := int64(0)
	if f.kv != nil {
		cur = f.kv.ModRevision
	}
	if cur != expected {
		return kubernetes.PutResponse{Revision: f.rev, KV: f.kv}, nil
	}
	if apply {
		f.rev++
		f.kv = &mvccpb.KeyValue{Key: []byte(key), Value: value, ModRevision: f.rev}
	}
	if fail {
		return kubernetes.PutResponse{}, rpctypes.ErrTimeout
	}
	return kubernetes.PutResponse{Succeeded: true, Revision: f.rev}, nil
}

// TestTolerantPut: a write whose answer was lost is found applied, at its
// revision; one that was not applied is sent again; one that lost to
// another write is a conflict.
func TestTolerantPut(t *testing.T) {
	ctx := context.Background()
	put := func(f *fakeKV, expected int64) kubernetes.PutResponse {
		k := &tolerantKubernetes{Interface: f, log: newErrLog()}
		resp, err := k.OptimisticPut(ctx, "/k", []byte("mine"), expected, kubernetes.PutOptions{GetOnFailure: true})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	f := &fakeKV{rev: 10, fail: []struct{ apply, err bool }{{true, true}}}
	if r := put(f, 0); !r.Succeeded || r.Revision != 11 || f.rev != 11 {
		t.Errorf("applied, answer lost: %+v at %d", r, f.rev)
	}
	f = &fakeKV{rev: 10, fail: []struct{ apply, err bool }{{false, true}, {false, true}}}
	if r := put(f, 0); !r.Succeeded || r.Revision != 11 || f.rev != 11 {
		t.Errorf("not applied twice, then applied: %+v at %d", r, f.rev)
	}
	f = &fakeKV{rev: 10, kv: &mvccpb.KeyValue{Value: []byte("other"), ModRevision: 10}, fail: []struct{ apply, err bool }{{false, true}}}
	f.Interface = nil
	k := &tolerantKubernetes{Interface: &racing{f}, log: newErrLog()}
	r, err := k.OptimisticPut(ctx, "/k", []byte("mine"), 10, kubernetes.PutOptions{GetOnFailure: true})
	if err != nil || r.Succeeded || r.KV == nil || string(r.KV.Value) != "theirs" {
		t.Errorf("lost to another write: %+v, %v", r, err)
	}
}

// racing: another client's write lands while the first attempt's answer is lost.
type racing struct{ *fakeKV }

func (r *racing) OptimisticPut(ctx context.Context, key string, value []byte, expected int64, opts kubernetes.PutOptions) (kubernetes.PutResponse, error) {
	resp, err := r.fakeKV.OptimisticPut(ctx, key, value, expected, opts)
	if err != nil {
		r.rev++
		r.kv = &mvccpb.KeyValue{Key: []byte(key), Value: []byte("theirs"), ModRevision: r.rev}
	}
	return resp, err
}
