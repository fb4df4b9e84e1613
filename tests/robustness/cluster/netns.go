// Package cluster runs real etcd members, each in a network namespace of its
// own joined to a bridge by a veth pair, and proxies beside them in the root
// namespace. Names start with "egpr" and addresses are in 10.77.0.0/24.
package cluster

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

const (
	bridge   = "egprbr0"
	bridgeIP = "10.77.0.1/24"
	prefix   = "egpr"
)

// bridgeAddr is the bridge's address: the proxies' and direct clients' source.
func bridgeAddr() string { return strings.SplitN(bridgeIP, "/", 2)[0] }

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

// CheckTools fails, saying how to get them, when ip, tc or ss is missing or
// namespaces cannot be made (not root).
func CheckTools() error {
	for _, t := range []string{"ip", "tc", "ss"} {
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

// ClientConns are the local ports of process pid's established connections
// to member i's client port (seen from the root namespace, where the proxies
// run; their address is the bridge's).
func ClientConns(i, pid int) ([]int, error) {
	out, err := exec.Command("ss", "-tnpH", "state", "established", "dst", memberIP(i)+":2379").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ss: %v: %s", err, strings.TrimSpace(string(out)))
	}
	local := bridgeAddr() + ":"
	var ports []int
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, fmt.Sprintf("pid=%d,", pid)) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, local) {
				if port, err := strconv.Atoi(strings.TrimPrefix(f, local)); err == nil {
					ports = append(ports, port)
				}
			}
		}
	}
	return ports, nil
}

// DropReplies drops, in member i's namespace, every packet it sends from its
// client port to the given ports on the bridge address, except resets: the
// member keeps receiving (and applying) requests on those connections, but
// its answers and acknowledgements are lost, until Heal. The kernel here has
// no gact action (tc "action drop"): an htb class whose queue holds nothing
// (pfifo limit 0) drops what the u32 filters send to it; everything else
// leaves unshaped (htb's direct queue).
func DropReplies(i int, ports []int) error {
	ns, dev := nsName(i), nsVeth(i)
	steps := [][]string{
		{"qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "0"},
		{"class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb", "rate", "1mbit"},
		{"qdisc", "add", "dev", dev, "parent", "1:2", "handle", "2:", "pfifo", "limit", "0"},
		// Resets (TCP flags byte, IP header without options) go out directly.
		{"filter", "add", "dev", dev, "parent", "1:", "prio", "1", "protocol", "ip", "u32",
			"match", "ip", "protocol", "6", "0xff", "match", "u8", "0x04", "0x04", "at", "33", "flowid", "1:"},
	}
	for _, port := range ports {
		steps = append(steps, []string{"filter", "add", "dev", dev, "parent", "1:", "prio", "2", "protocol", "ip", "u32",
			"match", "ip", "protocol", "6", "0xff", "match", "ip", "dst", bridgeAddr() + "/32",
			"match", "ip", "sport", "2379", "0xffff", "match", "ip", "dport", strconv.Itoa(port), "0xffff", "flowid", "1:2"})
	}
	for _, s := range steps {
		if err := ip(append([]string{"netns", "exec", ns, "tc"}, s...)...); err != nil {
			return err
		}
	}
	return nil
}

// ResetConns destroys (ss -K, SOCK_DESTROY) member i's sockets from its
// client port to the given ports on the bridge address: the kernel sends a
// reset to the peer. It returns how many sockets were still there to reset.
func ResetConns(i int, ports []int) (int, error) {
	reset := 0
	for _, port := range ports {
		args := []string{"netns", "exec", nsName(i), "ss", "-K", "-tnH", "src", memberIP(i) + ":2379",
			"dst", bridgeAddr(), "dport", "=", ":" + strconv.Itoa(port)}
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return reset, fmt.Errorf("ss -K: %v: %s", err, strings.TrimSpace(string(out)))
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.TrimSpace(line) != "" {
				reset++
			}
		}
	}
	return reset, nil
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
