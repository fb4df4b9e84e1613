// Command k8sbench is the benchmark's Kubernetes-shaped workload: N
// simulated kube-apiservers, each with Kubernetes' own etcd3 storage and
// watch cache (cacher) over a few resource prefixes, against three targets
// in one run: direct etcd, etcd's grpc-proxy and ours, in front of one
// 3-member cluster. Each apiserver watches its prefixes (PrevKV, progress
// notify, require-leader, as etcd3's watcher asks), writes objects, compacts
// through the compact_rev_key Txn, and serves consistent lists from its
// watch cache, which sends a progress request every 100 ms until its watch
// has reached etcd's revision. It prints, per target, consistent-list
// latency p50 and p99: a proxy that drops progress requests stalls each list
// until the cache gives up (3 s) and falls back to etcd. Then, per target,
// the CPU per delivered event and per progress request (cpuPhases), of the
// proxy process and of the members.
//
// Usage: k8sbench -etcd <etcd binary> -proxy <our binary> [-apiservers 3] [-seconds 10]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	"k8s.io/apiserver/pkg/storage/value/encrypt/identity"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"
	"k8s.io/klog/v2"

	"etcd-grpc-proxy.test/kubernetes/harness"
)

var resources = []string{"/pods/", "/configmaps/", "/secrets/"}

type result struct {
	lists, errors int64
	latencies     []time.Duration
}

func main() {
	etcdBin := flag.String("etcd", "", "etcd binary (3.5.13 or later: Kubernetes sends progress requests only from there)")
	proxyBin := flag.String("proxy", "", "etcd-grpc-proxy binary")
	apiservers := flag.Int("apiservers", 3, "simulated kube-apiservers per target")
	seconds := flag.Int("seconds", 10, "measured seconds per target")
	watchers := flag.Int("watchers", 300, "watchers of the CPU phases, per target")
	flag.Parse()
	klog.SetOutput(discard{})
	klog.LogToStderr(false)
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(discard{}, discard{}, discard{}))
	if *etcdBin == "" || *proxyBin == "" {
		fmt.Fprintln(os.Stderr, "k8sbench: -etcd and -proxy are required")
		os.Exit(2)
	}
	c, err := harness.Start(*etcdBin, 3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8sbench:", err)
		os.Exit(1)
	}
	defer c.Stop()
	all := c.Endpoints()
	theirs, err := c.StartProxy("etcd-proxy", *etcdBin, "grpc-proxy", "start", "--endpoints="+join(all), "--listen-addr={addr}", "--advertise-client-url={addr}", "--data-dir="+c.Dir+"/etcd-proxy-data")
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8sbench:", err)
		os.Exit(1)
	}
	ours, err := c.StartProxy("ours", *proxyBin, "start", "--endpoints="+c.First(), "--listen-addr={addr}")
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8sbench:", err)
		os.Exit(1)
	}
	targets := []struct {
		name string
		eps  []string
	}{{"direct", all}, {"etcd-proxy", []string{theirs}}, {"ours", []string{ours}}}
	fmt.Printf("| target | consistent lists | p50 ms | p99 ms | errors |\n|---|---|---|---|---|\n")
	for i, tg := range targets {
		r := run(tg.eps, fmt.Sprintf("/bench-%d", i), *apiservers, time.Duration(*seconds)*time.Second)
		sort.Slice(r.latencies, func(a, b int) bool { return r.latencies[a] < r.latencies[b] })
		fmt.Printf("| %s | %d | %.1f | %.1f | %d |\n", tg.name, r.lists, ms(quantile(r.latencies, 0.5)), ms(quantile(r.latencies, 0.99)), r.errors)
		fmt.Fprintf(os.Stderr, "k8sbench: %s: %d lists, p50 %.1f ms, p99 %.1f ms, %d errors\n", tg.name, r.lists, ms(quantile(r.latencies, 0.5)), ms(quantile(r.latencies, 0.99)), r.errors)
	}

	// CPU per delivered event and per progress request, each in a phase of
	// its own so the CPU is that work's alone: the writes go to a member
	// directly, only the watches and progress requests pass the target.
	phase := time.Duration(*seconds) * time.Second / 2
	if phase < 2*time.Second {
		phase = 2 * time.Second
	}
	fmt.Printf("\n**CPU per delivered event and per progress request** (%d watchers as kube-apiservers open them, PrevKV, progress-notify and require-leader, on %d clients; writes sent to a member directly for %s; then each client sends a progress request and waits for its answer, for %s). \"Proxy\" is the proxy process's CPU; \"members\" is the 3 members' together, which a proxy spares by sharing watches.\n\n", *watchers, *apiservers, phase, phase)
	fmt.Printf("| target | events delivered | proxy µs per event | members µs per event | progress requests answered | proxy µs per progress request | members µs per progress request |\n|---|---:|---:|---:|---:|---:|---:|\n")
	procs := map[string]string{"direct": "", "etcd-proxy": "etcd-proxy", "ours": "ours"}
	for i, tg := range targets {
		r := cpuPhases(c, procs[tg.name], tg.eps, fmt.Sprintf("/cpu-%d/pods/", i), *apiservers, *watchers, phase)
		fmt.Printf("| %s | %d | %s | %s | %d | %s | %s |\n", tg.name, r.events, perCall(r.proxyEvents, r.events, procs[tg.name]), perCall(r.membersEvents, r.events, "members"), r.progress, perCall(r.proxyProgress, r.progress, procs[tg.name]), perCall(r.membersProgress, r.progress, "members"))
		fmt.Fprintf(os.Stderr, "k8sbench: %s: %d events, %d progress answers, %d errors\n", tg.name, r.events, r.progress, r.errors)
	}
}

// cpuResult is what the two CPU phases counted, and the CPU they took.
type cpuResult struct {
	events, progress, errors       int64
	proxyEvents, membersEvents     time.Duration
	proxyProgress, membersProgress time.Duration
}

// cpuPhases opens `watchers` Kubernetes-shaped watches on prefix through
// endpoints, spread over `clients` clients, then writes to a member directly
// for d while counting the events the watches deliver, then has each client
// send progress requests one at a time (each waiting for its answer, 1 s at
// most) for d. proc names the proxy process ("" for none).
func cpuPhases(c *harness.Cluster, proc string, endpoints []string, prefix string, clients, watchers int, d time.Duration) cpuResult {
	var r cpuResult
	members := c.MemberNames()
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer cancel()
	var events atomic.Int64
	// Per client: the progress answers its first watch has seen.
	answers := make([]chan struct{}, clients)
	var cls []*clientv3.Client
	var opened sync.WaitGroup
	for k := 0; k < clients; k++ {
		cl, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			r.errors++
			continue
		}
		defer cl.Close()
		cls = append(cls, cl)
		answers[len(cls)-1] = make(chan struct{}, 1)
		for w := k; w < watchers; w += clients {
			ch := cl.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
			first := w == k
			answer := answers[len(cls)-1]
			opened.Add(1)
			go func() {
				created := false
				for resp := range ch {
					if resp.Created && !created {
						created = true
						opened.Done()
						continue
					}
					events.Add(int64(len(resp.Events)))
					if first && resp.IsProgressNotify() {
						select {
						case answer <- struct{}{}:
						default:
						}
					}
				}
				if !created {
					opened.Done()
				}
			}()
		}
	}
	if !waitTimeout(&opened, 30*time.Second) {
		r.errors++
		return r
	}

	writer, err := clientv3.New(clientv3.Config{Endpoints: []string{c.First()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		r.errors++
		return r
	}
	defer writer.Close()
	proxyBefore, membersBefore := c.CPU(proc), c.CPU(members...)
	for end, i := time.Now().Add(d), 0; time.Now().Before(end); i++ {
		if _, err := writer.Put(ctx, fmt.Sprintf("%sns/p%d", prefix, i%100), fmt.Sprintf("v%d", i), clientv3.WithPrevKV()); err != nil {
			r.errors++
		}
	}
	// Let the last events arrive before the count.
	time.Sleep(500 * time.Millisecond)
	r.events = events.Load()
	r.proxyEvents, r.membersEvents = c.CPU(proc)-proxyBefore, c.CPU(members...)-membersBefore

	proxyBefore, membersBefore = c.CPU(proc), c.CPU(members...)
	var progress atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for k, cl := range cls {
		wg.Add(1)
		go func(cl *clientv3.Client, answer chan struct{}) {
			defer wg.Done()
			for time.Now().Before(end) {
				if err := cl.RequestProgress(ctx); err != nil {
					return
				}
				select {
				case <-answer:
					progress.Add(1)
				case <-time.After(time.Second):
				}
			}
		}(cl, answers[k])
	}
	wg.Wait()
	r.progress = progress.Load()
	r.proxyProgress, r.membersProgress = c.CPU(proc)-proxyBefore, c.CPU(members...)-membersBefore
	return r
}

// waitTimeout waits for wg, d at most; false if it timed out.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// perCall is cpu / n in microseconds, or why there is no figure.
func perCall(cpu time.Duration, n int64, who string) string {
	switch {
	case who == "":
		return "no proxy"
	case n == 0:
		return "none answered"
	}
	return fmt.Sprintf("%.1f", float64(cpu.Microseconds())/float64(n))
}

// run drives n apiservers against endpoints for d; keys live under prefix.
func run(endpoints []string, prefix string, n int, d time.Duration) result {
	var (
		mu  sync.Mutex
		out result
		wg  sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(d)
	for a := 0; a < n; a++ {
		wg.Add(1)
		go func(a int) {
			defer wg.Done()
			kc, err := kubernetes.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				atomic.AddInt64(&out.errors, 1)
				return
			}
			defer kc.Close()
			var caches []storage.Interface
			for _, res := range resources {
				s, closeStore, err := harness.NewStorage(kc, prefix, res, identity.NewEncryptCheckTransformer(), etcd3.NewDefaultLeaseManagerConfig())
				if err != nil {
					atomic.AddInt64(&out.errors, 1)
					return
				}
				defer closeStore()
				cs, closeCache, err := harness.NewCached(ctx, s, res)
				if err != nil {
					atomic.AddInt64(&out.errors, 1)
					return
				}
				defer closeCache()
				caches = append(caches, cs)
			}
			// Compaction through the compact_rev_key Txn, every 2 s, as
			// kube-apiserver's compactor does (every 5 min by default).
			go func() {
				var version int64
				for time.Now().Before(deadline) {
					time.Sleep(2 * time.Second)
					resp, err := kc.Client.Get(ctx, "compact_rev_key")
					if err != nil {
						continue
					}
					rev := resp.Header.Revision - 50
					if rev <= 0 {
						continue
					}
					version, _, _, _ = etcd3.Compact(ctx, kc.Client, version, rev)
				}
			}()
			for i := 0; time.Now().Before(deadline); i++ {
				res := resources[i%len(resources)]
				cs := caches[i%len(caches)]
				pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("a%d-%d", a, i%50), Namespace: "ns"}}
				key := fmt.Sprintf("%sns/%s", res, pod.Name)
				err := cs.GuaranteedUpdate(ctx, key, &example.Pod{}, true, nil, func(in runtime.Object, _ storage.ResponseMeta) (runtime.Object, *uint64, error) {
					p := in.(*example.Pod)
					p.Name, p.Namespace = pod.Name, pod.Namespace
					p.Spec.NodeName = fmt.Sprintf("n%d", i)
					return p, nil, nil
				}, nil)
				if err != nil {
					atomic.AddInt64(&out.errors, 1)
				}
				// A consistent list (no resource version) from the watch cache
				// of another resource: its watch saw no event at the write's
				// revision, so only a progress answer tells it it is fresh.
				other := (i + 1) % len(resources)
				start := time.Now()
				list := &example.PodList{}
				opts := storage.ListOptions{Recursive: true, Predicate: storage.SelectionPredicate{Label: labels.Everything(), Field: fields.Everything()}}
				if err := caches[other].GetList(ctx, resources[other], opts, list); err != nil {
					atomic.AddInt64(&out.errors, 1)
					continue
				}
				took := time.Since(start)
				mu.Lock()
				out.lists++
				out.latencies = append(out.latencies, took)
				mu.Unlock()
			}
		}(a)
	}
	wg.Wait()
	return out
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func join(eps []string) string {
	s := ""
	for i, e := range eps {
		if i > 0 {
			s += ","
		}
		s += e
	}
	return s
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
