// Package cluster runs real etcd members, each in a network namespace of its
// own joined to a bridge by a veth pair, and proxies beside them in the root
// namespace. Names start with "egpr" and addresses are in 10.77.0.0/24.
package cluster

import (
	"fmt"
	"os/exec"
	"strings"
)

const (
	bridge   = "egprbr0"
	bridgeIP = "10.77.0.1/24"
	prefix   = "egpr"
)

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func tc(args ...string) error {
	out, err := exec.Command("tc", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Cleanup removes every namespace and link whose name starts with egpr
// (leftovers of an earlier run, or this run's at exit).
func Cleanup() {
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				_ = ip("netns", "del", f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			if strings.HasPrefix(name, prefix) {
				_ = ip("link", "del", name)
			}
		}
	}
}

// CheckTools fails, saying how to get them, when ip or tc is missing or
// namespaces cannot be made (not root).
func CheckTools() error {
	for _, t := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found: install iproute2 (apt-get install iproute2)", t)
		}
	}
	if err := ip("netns", "add", prefix+"probe"); err != nil {
		return fmt.Errorf("cannot create network namespaces (the robustness harness must run as root): %v", err)
	}
	return ip("netns", "del", prefix+"probe")
}

func setupBridge() error {
	if err := ip("link", "add", bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := ip("addr", "add", bridgeIP, "dev", bridge); err != nil {
		return err
	}
	return ip("link", "set", bridge, "up")
}

// netns names for member index i: namespace, host-side veth, member-side veth, address.
func nsName(i int) string   { return fmt.Sprintf("%sm%d", prefix, i) }
func hostVeth(i int) string { return fmt.Sprintf("%sh%d", prefix, i) }
func nsVeth(i int) string   { return fmt.Sprintf("%sn%d", prefix, i) }
func memberIP(i int) string { return fmt.Sprintf("10.77.0.%d", 10+i) }

func addNetns(i int) error {
	ns := nsName(i)
	_ = ip("netns", "del", ns)
	_ = ip("link", "del", hostVeth(i))
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", hostVeth(i), "type", "veth", "peer", "name", nsVeth(i), "netns", ns},
		{"link", "set", hostVeth(i), "master", bridge, "up"},
		{"-n", ns, "addr", "add", memberIP(i) + "/24", "dev", nsVeth(i)},
		{"-n", ns, "link", "set", nsVeth(i), "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

func delNetns(i int) {
	_ = ip("link", "del", hostVeth(i))
	_ = ip("netns", "del", nsName(i))
}

// Blackhole takes member i's bridge port down: its packets, and packets to
// it, are dropped without a reset, until Heal.
func Blackhole(i int) error { return ip("link", "set", hostVeth(i), "down") }

// Heal brings member i's bridge port back up and removes any shaping.
func Heal(i int) error {
	_ = tc("qdisc", "del", "dev", hostVeth(i), "root")
	_ = ip("netns", "exec", nsName(i), "tc", "qdisc", "del", "dev", nsVeth(i), "root")
	return ip("link", "set", hostVeth(i), "up")
}

// Delay slows member i's link. With netem it adds latency; without it (the
// kernel here has no sch_netem) a token bucket at a low rate queues every
// packet behind the ones before it.
func Delay(i int, latency string) (string, error) {
	if err := tc("qdisc", "add", "dev", hostVeth(i), "root", "netem", "delay", latency); err == nil {
		_ = ip("netns", "exec", nsName(i), "tc", "qdisc", "add", "dev", nsVeth(i), "root", "netem", "delay", latency)
		return "netem delay " + latency, nil
	}
	shape := []string{"root", "tbf", "rate", "256kbit", "burst", "4kb", "latency", "2s"}
	if err := tc(append([]string{"qdisc", "add", "dev", hostVeth(i)}, shape...)...); err != nil {
		return "", err
	}
	_ = ip(append([]string{"netns", "exec", nsName(i), "tc", "qdisc", "add", "dev", nsVeth(i)}, shape...)...)
	return "tbf 256kbit (no netem)", nil
}

// NetemAvailable says whether tc netem works in a namespace here.
func NetemAvailable() bool {
	ns := prefix + "probe"
	if ip("netns", "add", ns) != nil {
		return false
	}
	defer ip("netns", "del", ns)
	return ip("netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms") == nil
}
