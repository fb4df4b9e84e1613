// Package faults injects faults at random into a running cluster and its
// proxies, one at a time, logging each.
package faults

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"etcd-grpc-proxy.test/robustness/cluster"
	"etcd-grpc-proxy.test/robustness/history"
	"etcd-grpc-proxy.test/robustness/traffic"
)

// Injector picks and injects faults.
type Injector struct {
	C       *cluster.Cluster
	Proxies []*cluster.Proxy
	Env     *traffic.Env
	Rnd     *rand.Rand
	// Client reaches the proxies (for the compaction-while-replaying fault).
	Client *clientv3.Client
	// Truth is followed directly on the members; its endpoints follow rescales.
	TruthClient *clientv3.Client
	Truth       *traffic.Truth
	// OnRescale runs after the member set changed.
	OnRescale func()
	// Only, when not empty, lists the faults to inject (default: all of Names).
	Only []string
}

// Names are every fault (a run without -faults injects them all, in turn).
var Names = []string{"kill-member", "rescale", "blackhole", "delay", "compact-while-replaying", "proxy-restart", "answer-lost"}

// Run injects a fault every gap (±50%) until ctx ends, going through every
// kind of fault in a random order before any repeats.
func (in *Injector) Run(ctx context.Context, gap time.Duration) {
	var order []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap/2 + time.Duration(in.Rnd.Int63n(int64(gap)))):
		}
		if ctx.Err() != nil {
			return
		}
		if len(order) == 0 {
			kinds := Names
			if len(in.Only) > 0 {
				kinds = in.Only
			}
			order = append([]string(nil), kinds...)
			in.Rnd.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		name := order[0]
		order = order[1:]
		f := history.Fault{Name: name, Start: in.Env.Now()}
		var err error
		f.Target, err = in.inject(ctx, name)
		f.End = in.Env.Now()
		if err != nil {
			f.Err = err.Error()
		}
		in.Env.Rec.AddFault(f)
		// Every fault ends with the cluster whole again before the next one.
		_ = in.waitHealthy(60 * time.Second)
	}
}

func (in *Injector) waitHealthy(limit time.Duration) error {
	for _, m := range in.C.Members() {
		if err := cluster.WaitHTTP(m.Client()+"/health", limit); err != nil {
			return err
		}
	}
	return nil
}

func (in *Injector) member() *cluster.Member {
	ms := in.C.Members()
	return ms[in.Rnd.Intn(len(ms))]
}

func (in *Injector) hold(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (in *Injector) inject(ctx context.Context, name string) (string, error) {
	switch name {
	case "kill-member":
		m := in.member()
		in.C.KillMember(m)
		in.hold(ctx, time.Duration(500+in.Rnd.Intn(1500))*time.Millisecond)
		return m.Name, in.C.RestartMember(m)
	case "rescale":
		// Scale out by one, then back in: a fresh member joins, an old one leaves.
		rctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		added, err := in.C.AddMember(rctx)
		in.OnRescale()
		if err != nil {
			return "add", fmt.Errorf("add: %v", err)
		}
		var old []*cluster.Member
		for _, m := range in.C.Members() {
			if m != added {
				old = append(old, m)
			}
		}
		m := old[in.Rnd.Intn(len(old))]
		err = in.C.RemoveMember(rctx, m)
		in.OnRescale()
		if err != nil {
			return "+" + added.Name + " -" + m.Name, fmt.Errorf("remove: %v", err)
		}
		return "+" + added.Name + " -" + m.Name, nil
	case "blackhole":
		m := in.member()
		if err := cluster.Blackhole(m.Index); err != nil {
			return m.Name, err
		}
		in.hold(ctx, time.Duration(2+in.Rnd.Intn(3))*time.Second)
		return m.Name, cluster.Heal(m.Index)
	case "delay":
		m := in.member()
		how, err := cluster.Delay(m.Index, "150ms")
		if err != nil {
			return m.Name, err
		}
		// The process is also paused in short pulses: every answer it gives waits.
		until := time.Now().Add(time.Duration(2+in.Rnd.Intn(3)) * time.Second)
		for time.Now().Before(until) && ctx.Err() == nil {
			in.C.Pause(m, true)
			time.Sleep(150 * time.Millisecond)
			in.C.Pause(m, false)
			time.Sleep(100 * time.Millisecond)
		}
		return m.Name + " (" + how + ", SIGSTOP pulses)", cluster.Heal(m.Index)
	case "compact-while-replaying":
		return in.compactWhileReplaying(ctx)
	case "answer-lost":
		return in.answerLost(ctx)
	case "proxy-restart":
		p := in.Proxies[in.Rnd.Intn(len(in.Proxies))]
		in.C.KillProxy(p)
		in.hold(ctx, time.Duration(200+in.Rnd.Intn(1000))*time.Millisecond)
		return p.Name, in.C.StartProxy(p, in.C.Endpoints())
	}
	return "", fmt.Errorf("unknown fault %s", name)
}

// answerLost loses a member's answers to the proxies, three times over (on
// members picked at random, a second apart), so that even a run that injects
// it once catches writes in flight. See loseAnswers.
func (in *Injector) answerLost(ctx context.Context) (string, error) {
	var rounds []string
	for i := 0; i < 3 && ctx.Err() == nil; i++ {
		if i > 0 {
			in.hold(ctx, time.Second)
		}
		r, err := in.loseAnswers(ctx, in.member())
		rounds = append(rounds, r)
		if err != nil {
			return strings.Join(rounds, "; "), err
		}
	}
	return strings.Join(rounds, "; "), nil
}

// loseAnswers drops, in member m's namespace, its packets to the proxies'
// connections for a moment (requests still arrive and writes are applied,
// their answers and acknowledgements do not leave), then resets those
// connections (SOCK_DESTROY: the proxies see "connection reset" on requests
// the member has already applied). A write the proxy sends again elsewhere
// after that is applied twice.
func (in *Injector) loseAnswers(ctx context.Context, m *cluster.Member) (string, error) {
	var ports []int
	for _, p := range in.Proxies {
		if pid := p.Pid(); pid != 0 {
			ps, err := cluster.ClientConns(m.Index, pid)
			if err != nil {
				return m.Name, err
			}
			ports = append(ports, ps...)
		}
	}
	if len(ports) == 0 {
		return m.Name + " (no proxy connected to it)", nil
	}
	if err := cluster.DropReplies(m.Index, ports); err != nil {
		_ = cluster.Heal(m.Index)
		return m.Name, err
	}
	hold := time.Duration(300+in.Rnd.Intn(900)) * time.Millisecond
	in.hold(ctx, hold)
	reset, err := cluster.ResetConns(m.Index, ports)
	if herr := cluster.Heal(m.Index); err == nil {
		err = herr
	}
	if err == nil && reset == 0 {
		err = fmt.Errorf("ss -K reset none of the %d connections (no SOCK_DESTROY: CONFIG_INET_DIAG_DESTROY?)", len(ports))
	}
	return fmt.Sprintf("%s: answers on %d proxy connections dropped for %v, %d reset", m.Name, len(ports), hold, reset), err
}

// compactWhileReplaying opens watches through the proxies from the oldest
// revision still kept, and compacts while they replay.
func (in *Injector) compactWhileReplaying(ctx context.Context) (string, error) {
	from := traffic.Compacted.Load() + 1
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	done := make(chan struct{}, 3)
	for i := 0; i < 3; i++ {
		w := &history.Watch{Client: -1 - i, Key: "/r/", End: clientv3.GetPrefixRangeEnd("/r/"), StartRev: from + int64(i), PrevKV: i != 2}
		in.Env.Rec.AddWatch(w)
		go func() { traffic.Record(wctx, in.Env, in.Client, w); done <- struct{}{} }()
	}
	target := in.Truth.Last() - 5
	var err error
	if target > traffic.Compacted.Load() {
		if err = traffic.Compact(ctx, in.Env, in.Client, target); err == nil {
			traffic.Compacted.Store(target)
		}
	}
	for i := 0; i < 3; i++ {
		<-done
	}
	return fmt.Sprintf("watches from %d, compact to %d", from, target), err
}
