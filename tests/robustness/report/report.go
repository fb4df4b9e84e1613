// Package report writes one robustness run as a markdown section.
package report

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"etcd-grpc-proxy.test/robustness/checker"
	"etcd-grpc-proxy.test/robustness/history"
)

// Run is what one run measured.
type Run struct {
	Target     string
	Seed       int64
	Duration   time.Duration
	Wall       time.Duration
	Rec        *history.Recorder
	Truth      int
	Violations checker.Violations
	Notes      []string
	// Known maps a guarantee to a known finding: reported, not counted.
	Known map[string]string
}

// Total is the number of violations (timeouts of the linearizability check not counted).
func (r *Run) Total() int {
	n := 0
	for g, v := range r.Violations {
		if _, known := r.Known[g]; !known && g != checker.LinearizeUnknown {
			n += len(v)
		}
	}
	return n
}

// ReadKnown reads a known-findings file: "guarantee | note" lines, # comments.
func ReadKnown(path string) (map[string]string, error) {
	known := map[string]string{}
	if path == "" {
		return known, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		g, note, _ := strings.Cut(line, " | ")
		known[strings.TrimSpace(g)] = strings.TrimSpace(note)
	}
	return known, nil
}

// Write writes the run's section.
func (r *Run) Write(w io.Writer) {
	fmt.Fprintf(w, "### %s, seed %d, %s of traffic (wall %s)\n\n", r.Target, r.Seed, r.Duration, r.Wall.Round(time.Second))
	ok, failed := map[history.Kind]int{}, map[history.Kind]int{}
	for _, op := range r.Rec.Ops {
		k := op.Req.Kind
		if k == history.Range && op.Req.Serializable {
			k = "range (serializable)"
		}
		if op.Resp.Err != "" {
			failed[k]++
		} else {
			ok[k]++
		}
	}
	var kinds []string
	for k := range ok {
		kinds = append(kinds, string(k))
	}
	for k := range failed {
		if ok[k] == 0 {
			kinds = append(kinds, string(k))
		}
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, ok[history.Kind(k)], failed[history.Kind(k)]))
	}
	events, kas, progress, compacted := 0, 0, 0, 0
	for _, wt := range r.Rec.Watch {
		for _, resp := range wt.Resps {
			events += len(resp.Events)
			if resp.Progress {
				progress++
			}
			if resp.CompactRev != 0 {
				compacted++
			}
		}
	}
	for _, l := range r.Rec.Leases {
		kas += len(l.KeepAlives)
	}
	fmt.Fprintf(w, "- operations (ok/failed): %d ops: %s\n", len(r.Rec.Ops), strings.Join(parts, ", "))
	fmt.Fprintf(w, "- watches: %d streams, %d events and %d progress notifications received, %d ended by compaction; members' log: %d events\n", len(r.Rec.Watch), events, progress, compacted, r.Truth)
	fmt.Fprintf(w, "- leases: %d, keep-alives: %d\n", len(r.Rec.Leases), kas)
	count, errs := map[string]int{}, map[string]int{}
	for _, f := range r.Rec.Faults {
		count[f.Name]++
		if f.Err != "" {
			errs[f.Name]++
		}
	}
	var fs []string
	for n, c := range count {
		fs = append(fs, fmt.Sprintf("%s ×%d", n, c))
		if errs[n] > 0 {
			fs[len(fs)-1] += fmt.Sprintf(" (%d failed to inject)", errs[n])
		}
	}
	sort.Strings(fs)
	fmt.Fprintf(w, "- faults: %d: %s\n", len(r.Rec.Faults), strings.Join(fs, ", "))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintf(w, "\n| guarantee | violations | first |\n|---|---|---|\n")
	var gs []string
	for g := range r.Violations {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	for _, g := range gs {
		v := r.Violations[g]
		first := ""
		if len(v) > 0 {
			first = strings.ReplaceAll(v[0], "|", "\\|")
			if len(first) > 300 {
				first = first[:300] + "…"
			}
		}
		count := fmt.Sprint(len(v))
		if note, known := r.Known[g]; known && len(v) > 0 {
			count += " (known finding: " + note + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", g, count, first)
	}
	fmt.Fprintln(w)
}

// FaultLog writes the fault log, one line per fault.
func (r *Run) FaultLog(w io.Writer) {
	for _, f := range r.Rec.Faults {
		fmt.Fprintf(w, "%8.3fs %8.3fs %-24s %s %s\n", float64(f.Start)/1e9, float64(f.End)/1e9, f.Name, f.Target, f.Err)
	}
}
