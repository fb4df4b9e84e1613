package traffic

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"etcd-grpc-proxy.test/robustness/history"
)

// keepAlive sends one keep-alive of lease id on a stream of its own and
// waits for the answer.
func (c *kvClient) keepAlive(ctx context.Context, id int64) history.KeepAlive {
	ctx, cancel := context.WithTimeout(ctx, c.env.OpTimeout)
	defer cancel()
	ka := history.KeepAlive{Call: c.env.Now()}
	stream, err := c.ls.LeaseKeepAlive(ctx)
	if err == nil {
		err = stream.Send(&pb.LeaseKeepAliveRequest{ID: id})
	}
	var resp *pb.LeaseKeepAliveResponse
	if err == nil {
		resp, err = stream.Recv()
	}
	ka.Return = c.env.Now()
	if err != nil {
		ka.Err = err.Error()
		return ka
	}
	_ = stream.CloseSend()
	ka.TTL = resp.TTL
	return ka
}
