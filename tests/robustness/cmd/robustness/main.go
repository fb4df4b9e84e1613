// Command robustness runs traffic through a proxy (ours or etcd's
// grpc-proxy) in front of a 3-member etcd cluster under random faults,
// records every request, and checks linearizability, serializable reads,
// watch guarantees, leases, acknowledged writes and writes applied at most
// once against the members' own history. It appends a markdown section to
// -report and exits 1 when any guarantee was violated.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"etcd-grpc-proxy.test/robustness/checker"
	"etcd-grpc-proxy.test/robustness/cluster"
	"etcd-grpc-proxy.test/robustness/faults"
	"etcd-grpc-proxy.test/robustness/history"
	"etcd-grpc-proxy.test/robustness/report"
	"etcd-grpc-proxy.test/robustness/traffic"
)

func main() {
	secs := flag.Int("secs", 40, "seconds of traffic")
	seed := flag.Int64("seed", 1, "random seed (faults and traffic)")
	target := flag.String("target", "ours", "proxy under test: ours or etcd (etcd's grpc-proxy)")
	proxyBin := flag.String("proxy-bin", os.Getenv("PROXY_BIN"), "our proxy binary")
	etcdBin := flag.String("etcd-bin", os.Getenv("ETCD_BIN"), "etcd 3.6 binary")
	out := flag.String("report", "", "append the run's markdown section to this file")
	keep := flag.Bool("keep", false, "keep the run's directory (logs, data) instead of removing it")
	knownFile := flag.String("known", "", "known findings (guarantee | note lines): reported, not failing the run")
	summary := flag.String("summary", "", "append the run's figures as a JSON line to this file")
	summarize := flag.String("summarize", "", "only print the table of a summary file (ours against etcd's grpc-proxy)")
	only := flag.String("faults", "", "comma-separated faults to inject, in turn (default: every one: "+strings.Join(faults.Names, ",")+")")
	flag.Parse()
	if *summarize != "" {
		if err := report.Summarize(*summarize, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "robustness:", err)
			os.Exit(2)
		}
		return
	}
	known, err := report.ReadKnown(*knownFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "robustness:", err)
		os.Exit(2)
	}
	if *target != "ours" {
		known = nil // findings are about our proxy; etcd's is only measured
	}
	var faultNames []string
	if *only != "" {
		faultNames = strings.Split(*only, ",")
		for _, n := range faultNames {
			if !slices.Contains(faults.Names, n) {
				fmt.Fprintf(os.Stderr, "robustness: -faults: unknown fault %q (known: %s)\n", n, strings.Join(faults.Names, ","))
				os.Exit(2)
			}
		}
	}
	code, err := run(*secs, *seed, *target, *proxyBin, *etcdBin, *out, *summary, *keep, known, faultNames)
	if err != nil {
		fmt.Fprintln(os.Stderr, "robustness:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func need(path, what, hint string) error {
	if path == "" {
		return fmt.Errorf("%s not given: %s", what, hint)
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s %s: %v: %s", what, path, err, hint)
	}
	return nil
}

func run(secs int, seed int64, target, proxyBin, etcdBin, out, summary string, keep bool, known map[string]string, faultNames []string) (int, error) {
	if err := need(etcdBin, "etcd binary (-etcd-bin / ETCD_BIN)", "build it with scripts/etcd-bin.sh 3.6"); err != nil {
		return 2, err
	}
	if target == "ours" {
		if err := need(proxyBin, "proxy binary (-proxy-bin / PROXY_BIN)", "build it with cargo build"); err != nil {
			return 2, err
		}
	} else if target != "etcd" {
		return 2, fmt.Errorf("-target is ours or etcd, not %q", target)
	}
	if err := cluster.CheckTools(); err != nil {
		return 2, err
	}
	wall := time.Now()
	dir, err := os.MkdirTemp("", "egpr-robustness-")
	if err != nil {
		return 2, err
	}
	var c *cluster.Cluster
	var stopOnce sync.Once
	pruneData := false // kept as evidence: logs and history stay, members' data goes
	stop := func() {
		stopOnce.Do(func() {
			if c != nil {
				c.Stop()
			} else {
				cluster.Cleanup()
			}
			if !keep {
				_ = os.RemoveAll(dir)
			} else if pruneData {
				entries, _ := os.ReadDir(dir)
				for _, e := range entries {
					if e.IsDir() {
						_ = os.RemoveAll(filepath.Join(dir, e.Name()))
					}
				}
			}
		})
	}
	defer stop()
	// Nothing may hang: a signal or the global deadline kills everything.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; stop(); os.Exit(3) }()
	watchdog := time.AfterFunc(time.Duration(secs)*time.Second+5*time.Minute, func() {
		fmt.Fprintln(os.Stderr, "robustness: global timeout, killing everything (logs in", dir+")")
		keep = true
		stop()
		os.Exit(3)
	})
	defer watchdog.Stop()

	fmt.Printf("robustness: %s, seed %d, %ds, logs in %s\n", target, seed, secs, dir)
	c, err = cluster.Start(etcdBin, dir, 3)
	if err != nil {
		return 2, err
	}
	rnd := rand.New(rand.NewSource(seed))
	rec := &history.Recorder{}
	bin, ours := proxyBin, target == "ours"
	if !ours {
		bin = etcdBin
	}
	proxies := []*cluster.Proxy{cluster.NewProxy("proxy-a", bin, ours), cluster.NewProxy("proxy-b", bin, ours)}
	byAddr := map[string]*cluster.Proxy{}
	for _, p := range proxies {
		if err := c.StartProxy(p, c.Endpoints()); err != nil {
			return 2, err
		}
		byAddr[p.Addr] = p
	}
	env := &traffic.Env{Rec: rec, Start: time.Now(), OpTimeout: 5 * time.Second, Epoch: func(addr string) int {
		if p := byAddr[addr]; p != nil {
			return p.CurrentEpoch()
		}
		return 0
	}}
	direct, err := c.Client()
	if err != nil {
		return 2, err
	}
	defer direct.Close()
	ctx0, cancel0 := context.WithTimeout(context.Background(), 10*time.Second)
	first, err := direct.Get(ctx0, "/r/", clientv3.WithPrefix())
	cancel0()
	if err != nil {
		return 2, fmt.Errorf("first read: %v", err)
	}
	initRev := first.Header.Revision

	truth := &traffic.Truth{}
	truthCtx, stopTruth := context.WithCancel(context.Background())
	defer stopTruth()
	go truth.Follow(truthCtx, direct)

	newClient := func() (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: []string{proxies[0].Addr, proxies[1].Addr}, DialTimeout: 2 * time.Second,
			DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, Logger: zap.NewNop()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs)*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var clients []*clientv3.Client
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	start := func(f func(cli *clientv3.Client, id int, rnd *rand.Rand)) error {
		cli, err := newClient()
		if err != nil {
			return err
		}
		clients = append(clients, cli)
		id, r := len(clients), rand.New(rand.NewSource(rnd.Int63()))
		wg.Add(1)
		go func() { defer wg.Done(); f(cli, id, r) }()
		return nil
	}
	for i := 0; i < 3; i++ {
		if err := start(func(cli *clientv3.Client, id int, r *rand.Rand) { traffic.RunEtcd(ctx, env, id, cli, r) }); err != nil {
			return 2, err
		}
	}
	if err := start(func(cli *clientv3.Client, id int, r *rand.Rand) { traffic.RunLeases(ctx, env, id, cli, r) }); err != nil {
		return 2, err
	}
	for i := 0; i < 2; i++ {
		if err := start(func(cli *clientv3.Client, id int, r *rand.Rand) { traffic.RunKubernetes(ctx, env, id, cli, r) }); err != nil {
			return 2, err
		}
	}
	if err := start(func(cli *clientv3.Client, id int, r *rand.Rand) {
		traffic.RunCompactor(ctx, env, id, cli, r, 3*time.Second, truth.Last)
	}); err != nil {
		return 2, err
	}
	faultCli, err := newClient()
	if err != nil {
		return 2, err
	}
	clients = append(clients, faultCli)
	inj := &faults.Injector{C: c, Proxies: proxies, Env: env, Rnd: rand.New(rand.NewSource(rnd.Int63())), Client: faultCli,
		Truth: truth, OnRescale: func() { direct.SetEndpoints(c.Endpoints()...) }, Only: faultNames}
	wg.Add(1)
	go func() { defer wg.Done(); inj.Run(ctx, 2*time.Second) }()
	wg.Wait()

	// Settle: every member healthy, the members' log read to the end.
	for _, m := range c.Members() {
		_ = cluster.Heal(m.Index)
		if err := cluster.WaitHTTP(m.Client()+"/health", 60*time.Second); err != nil {
			return 2, fmt.Errorf("after the run: %v", err)
		}
	}
	v := checker.Violations{}
	finalRev, err := settle(c, direct, truth)
	if err != nil {
		return 2, err
	}
	checkHashKV(c, direct, finalRev, v)
	stopTruth()
	events, err := truth.Events()
	if err != nil {
		return 2, err
	}
	checker.Linearizability(rec.Ops, initRev, 3*time.Minute, v)
	headerBehind := checker.Serializable(rec.Ops, events, v)
	checker.Watches(rec.Watch, events, rec.Compactions, v)
	checker.Leases(rec.Leases, time.Second, v)
	checker.Writes(rec.Ops, events, v)
	checker.AppliedOnce(rec.Ops, events, v)

	name := "our proxy (etcd-grpc-proxy, one --endpoints)"
	if !ours {
		name = "etcd's grpc-proxy (3.6, every member in --endpoints)"
	}
	r := &report.Run{Target: name, Seed: seed, Duration: time.Duration(secs) * time.Second, Wall: time.Since(wall), Rec: rec, Truth: len(events), Violations: v, Known: known}
	r.Notes = append(r.Notes, fmt.Sprintf("serializable answers whose header revision is below one the same proxy answered earlier (content still current, so not violations): %d", headerBehind))
	if len(faultNames) > 0 {
		r.Notes = append(r.Notes, "faults restricted to: "+strings.Join(faultNames, ", "))
	}
	if !cluster.NetemAvailable() {
		r.Notes = append(r.Notes, "tc netem is not in this kernel: delay is a 256 kbit/s token bucket on the member's veth pair plus SIGSTOP pulses of the member")
	}
	r.Write(os.Stdout)
	r.FaultLog(os.Stdout)
	if out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return 2, err
		}
		r.Write(f)
		f.Close()
	}
	if summary != "" {
		if err := report.AppendLine(summary, r.Line(ours)); err != nil {
			return 2, err
		}
	}
	if r.Total() > 0 && ours && !keep {
		keep, pruneData = true, true // the evidence stays: logs, history, violations
		fmt.Printf("robustness: violations; history and logs kept in %s\n", dir)
	}
	if keep {
		_ = writeJSON(filepath.Join(dir, "history.json"), rec)
		_ = writeFaultLog(filepath.Join(dir, "faults.log"), r)
		_ = writeViolations(filepath.Join(dir, "violations.log"), v)
	}
	if r.Total() > 0 {
		return 1, nil
	}
	return 0, nil
}

func writeJSON(path string, x interface{}) error {
	b, err := json.MarshalIndent(x, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func writeFaultLog(path string, r *report.Run) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r.FaultLog(f)
	return nil
}

func writeViolations(path string, v checker.Violations) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for g, list := range v {
		for _, d := range list {
			fmt.Fprintf(f, "%s: %s\n", g, d)
		}
	}
	return nil
}

// settle waits until the members' log has been read up to the cluster's revision.
func settle(c *cluster.Cluster, direct *clientv3.Client, truth *traffic.Truth) (int64, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := direct.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil && truth.Last() >= resp.Header.Revision {
			return resp.Header.Revision, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("the members' log was not read up to the cluster's revision (at %d)", truth.Last())
}

// checkHashKV asks every member for its HashKV at rev; all must agree.
func checkHashKV(c *cluster.Cluster, direct *clientv3.Client, rev int64, v checker.Violations) {
	hashes, errs := map[string]uint32{}, map[string]error{}
	for _, m := range c.Members() {
		var resp *clientv3.HashKVResponse
		var err error
		for try := 0; try < 50; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			resp, err = direct.HashKV(ctx, m.Client(), rev)
			cancel()
			if err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			errs[m.Name] = err
		} else {
			hashes[m.Name] = resp.Hash
		}
	}
	checker.HashKV(rev, hashes, errs, v)
}
