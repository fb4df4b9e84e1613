// Package traffic is the clients of a robustness run: etcd-shaped KV and
// lease clients and Kubernetes-shaped list/watch/compact clients, each
// issuing one request at a time through the proxies and recording it.
package traffic

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"etcd-grpc-proxy.test/robustness/history"
)

// Env is what every client shares.
type Env struct {
	Rec   *history.Recorder
	Start time.Time
	// Epoch gives a proxy address's current incarnation.
	Epoch func(addr string) int
	// OpTimeout bounds one request.
	OpTimeout time.Duration
}

// Now is nanoseconds since the run began.
func (e *Env) Now() int64 { return time.Since(e.Start).Nanoseconds() }

// kvClient sends raw KV requests on a clientv3 connection (which balances
// over the proxies) and records each one.
type kvClient struct {
	env *Env
	id  int
	cli *clientv3.Client
	kv  pb.KVClient
	ls  pb.LeaseClient
}

func newKVClient(env *Env, id int, cli *clientv3.Client) *kvClient {
	return &kvClient{env: env, id: id, cli: cli, kv: pb.NewKVClient(cli.ActiveConnection()), ls: pb.NewLeaseClient(cli.ActiveConnection())}
}

func cmpOf(c history.Cmp) *pb.Compare {
	cmp := &pb.Compare{Result: pb.Compare_EQUAL, Key: []byte(c.Key)}
	switch c.Target {
	case "mod":
		cmp.Target, cmp.TargetUnion = pb.Compare_MOD, &pb.Compare_ModRevision{ModRevision: c.Rev}
	case "create":
		cmp.Target, cmp.TargetUnion = pb.Compare_CREATE, &pb.Compare_CreateRevision{CreateRevision: c.Rev}
	case "version":
		cmp.Target, cmp.TargetUnion = pb.Compare_VERSION, &pb.Compare_Version{Version: c.Rev}
	case "value":
		cmp.Target, cmp.TargetUnion = pb.Compare_VALUE, &pb.Compare_Value{Value: []byte(c.Value)}
	}
	return cmp
}

func end(r history.Request) []byte {
	if r.End == "" {
		return nil
	}
	return []byte(r.End)
}

func requestOp(r history.Request) *pb.RequestOp {
	switch r.Kind {
	case history.Put:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(r.Key), Value: []byte(r.Value), Lease: r.Lease}}}
	case history.Delete:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(r.Key), RangeEnd: end(r)}}}
	default:
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(r.Key), RangeEnd: end(r), Serializable: r.Serializable}}}
	}
}

func kvsOf(r *pb.RangeResponse) ([]history.KV, int64) {
	var out []history.KV
	for _, kv := range r.Kvs {
		out = append(out, history.KV{Key: string(kv.Key), Value: string(kv.Value), ModRev: kv.ModRevision, CreateRev: kv.CreateRevision, Version: kv.Version, Lease: kv.Lease})
	}
	return out, r.Count
}

// Do sends one request and records it with its answer.
func (c *kvClient) Do(ctx context.Context, req history.Request) history.Response {
	ctx, cancel := context.WithTimeout(ctx, c.env.OpTimeout)
	defer cancel()
	var p peer.Peer
	call := c.env.Now()
	resp := c.send(ctx, req, grpc.Peer(&p))
	op := history.Op{Client: c.id, Req: req, Resp: resp, Call: call, Return: c.env.Now()}
	if p.Addr != nil {
		op.Proxy = p.Addr.String()
		op.Epoch = c.env.Epoch(op.Proxy)
	}
	if ctx.Err() != nil && resp.Err == "" {
		resp.Err = ctx.Err().Error()
	}
	c.env.Rec.AddOp(op)
	return resp
}

func (c *kvClient) send(ctx context.Context, req history.Request, opt grpc.CallOption) history.Response {
	var out history.Response
	fail := func(err error) history.Response { return history.Response{Err: err.Error()} }
	switch req.Kind {
	case history.Range:
		r, err := c.kv.Range(ctx, &pb.RangeRequest{Key: []byte(req.Key), RangeEnd: end(req), Serializable: req.Serializable}, opt)
		if err != nil {
			return fail(err)
		}
		out.KVs, out.Count = kvsOf(r)
		out.Rev = r.Header.Revision
	case history.Put:
		r, err := c.kv.Put(ctx, &pb.PutRequest{Key: []byte(req.Key), Value: []byte(req.Value), Lease: req.Lease}, opt)
		if err != nil {
			return fail(err)
		}
		out.Rev = r.Header.Revision
	case history.Delete:
		r, err := c.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte(req.Key), RangeEnd: end(req)}, opt)
		if err != nil {
			return fail(err)
		}
		out.Rev, out.Deleted = r.Header.Revision, r.Deleted
	case history.Txn:
		t := &pb.TxnRequest{}
		for _, cmp := range req.Cmps {
			t.Compare = append(t.Compare, cmpOf(cmp))
		}
		for _, s := range req.Then {
			t.Success = append(t.Success, requestOp(s))
		}
		for _, s := range req.Else {
			t.Failure = append(t.Failure, requestOp(s))
		}
		r, err := c.kv.Txn(ctx, t, opt)
		if err != nil {
			return fail(err)
		}
		out.Rev, out.Succeeded = r.Header.Revision, r.Succeeded
		for _, sub := range r.Responses {
			var s history.Response
			switch x := sub.Response.(type) {
			case *pb.ResponseOp_ResponseRange:
				s.KVs, s.Count = kvsOf(x.ResponseRange)
			case *pb.ResponseOp_ResponseDeleteRange:
				s.Deleted = x.ResponseDeleteRange.Deleted
			}
			out.Results = append(out.Results, s)
		}
	case history.LeaseGrant:
		r, err := c.ls.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: req.Lease, TTL: req.TTL}, opt)
		if err != nil {
			return fail(err)
		}
		if r.Error != "" {
			return history.Response{Err: r.Error}
		}
		out.Rev = r.Header.Revision
	case history.LeaseRevoke:
		r, err := c.ls.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: req.Lease}, opt)
		if err != nil {
			return fail(err)
		}
		out.Rev = r.Header.Revision
	}
	return out
}
