package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Line is one run's figures, one JSON line in a summary file.
type Line struct {
	Ours       bool
	Seed       int64
	Ops        int
	Faults     int
	Events     int // watch events received
	Progress   int // progress notifications received
	Violations map[string]int
	Known      map[string]string
}

// Line sums the run up.
func (r *Run) Line(ours bool) Line {
	l := Line{Ours: ours, Seed: r.Seed, Ops: len(r.Rec.Ops), Faults: len(r.Rec.Faults), Violations: map[string]int{}, Known: r.Known}
	for g, v := range r.Violations {
		l.Violations[g] = len(v)
	}
	for _, w := range r.Rec.Watch {
		for _, resp := range w.Resps {
			l.Events += len(resp.Events)
			if resp.Progress {
				l.Progress++
			}
		}
	}
	return l
}

// AppendLine appends l to the summary file at path.
func AppendLine(path string, l Line) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(l)
}

// Summarize writes a table of violations per guarantee, ours against etcd's
// grpc-proxy, one column per run, from a summary file.
func Summarize(path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var lines []Line
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return err
		}
		lines = append(lines, l)
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Ours && !lines[j].Ours })
	guarantees := map[string]bool{}
	header := []string{"guarantee"}
	for _, l := range lines {
		for g := range l.Violations {
			guarantees[g] = true
		}
		who := "etcd's"
		if l.Ours {
			who = "ours"
		}
		header = append(header, fmt.Sprintf("%s seed %d", who, l.Seed))
	}
	var gs []string
	for g := range guarantees {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	row := func(name string, cell func(Line) string) {
		cells := []string{name}
		for _, l := range lines {
			cells = append(cells, cell(l))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	row("operations", func(l Line) string { return fmt.Sprint(l.Ops) })
	row("faults injected", func(l Line) string { return fmt.Sprint(l.Faults) })
	row("watch events received", func(l Line) string { return fmt.Sprint(l.Events) })
	row("progress notifications received", func(l Line) string { return fmt.Sprint(l.Progress) })
	for _, g := range gs {
		row(g, func(l Line) string {
			n := l.Violations[g]
			if _, known := l.Known[g]; known && n > 0 {
				return fmt.Sprintf("%d (known)", n)
			}
			return fmt.Sprint(n)
		})
	}
	fmt.Fprintln(w)
	return nil
}
