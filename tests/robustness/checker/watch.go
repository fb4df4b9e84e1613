package checker

import (
	"fmt"

	"etcd-grpc-proxy.test/robustness/history"
)

// Watches checks every watch stream against the members' own event log
// (truth, in revision order, with prev_kv): ordered, unique, atomic,
// bookmarkable, reliable, resumable, and prev_kv/filters as asked. An event
// may lack its prev_kv when a compaction that removed the previous revision
// was sent before the event arrived: etcd itself then sends none.
func Watches(watches []*history.Watch, truth []history.Event, compactions []history.Compaction, v Violations) {
	for _, g := range []string{WatchOrdered, WatchUnique, WatchAtomic, WatchBookmark, WatchReliable, WatchResumable, WatchPrevKV} {
		v.Touch(g)
	}
	for i, w := range watches {
		checkWatch(fmt.Sprintf("watch %d (client %d, %q from rev %d)", i, w.Client, w.Key, w.StartRev), w, truth, compactions, v)
	}
}

type evKey struct {
	rev int64
	key string
}

func checkWatch(name string, w *history.Watch, truth []history.Event, compactions []history.Compaction, v Violations) {
	// compactedBy: whether the revision before rev could have been compacted by time t.
	compactedBy := func(rev, t int64) bool {
		for _, c := range compactions {
			if c.Call <= t && c.Rev >= rev {
				return true
			}
		}
		return false
	}
	arrived := map[evKey]int64{}
	var got []history.Event
	var lastRev, progressRev int64
	seen := map[evKey]bool{}
	respOf := map[int64]int{} // revision -> the response that carried it
	for ri, r := range w.Resps {
		if r.Progress {
			if r.Rev > progressRev {
				progressRev = r.Rev
			}
			continue
		}
		for _, ev := range r.Events {
			rev := ev.KV.ModRev
			if rev < lastRev {
				v.Add(WatchOrdered, fmt.Sprintf("%s: event at rev %d after rev %d", name, rev, lastRev))
			}
			if rev <= progressRev {
				v.Add(WatchBookmark, fmt.Sprintf("%s: event at rev %d after progress notification at rev %d", name, rev, progressRev))
			}
			k := evKey{rev, ev.KV.Key}
			if seen[k] {
				v.Add(WatchUnique, fmt.Sprintf("%s: event %q at rev %d twice", name, ev.KV.Key, rev))
			}
			seen[k] = true
			if at, ok := respOf[rev]; ok && at != ri {
				v.Add(WatchAtomic, fmt.Sprintf("%s: events of rev %d split over responses %d and %d", name, rev, at, ri))
			}
			respOf[rev] = ri
			arrived[k] = r.Time
			if rev > lastRev {
				lastRev = rev
			}
			got = append(got, ev)
		}
	}
	upTo := lastRev
	if progressRev > upTo {
		upTo = progressRev
	}
	// What the stream should have carried from StartRev up to what it saw or was told it saw.
	var want []history.Event
	for _, ev := range truth {
		rev := ev.KV.ModRev
		if rev < w.StartRev || rev > upTo || !inRange(ev.KV.Key, w.Key, w.End) {
			continue
		}
		if (ev.Delete && w.NoDelete) || (!ev.Delete && w.NoPut) {
			continue
		}
		want = append(want, ev)
	}
	if len(got) > 0 && len(want) > 0 && got[0].KV.ModRev != want[0].KV.ModRev {
		v.Add(WatchResumable, fmt.Sprintf("%s: first event at rev %d, the first since rev %d is at %d", name, got[0].KV.ModRev, w.StartRev, want[0].KV.ModRev))
	} else if len(got) > 0 && got[0].KV.ModRev < w.StartRev {
		v.Add(WatchResumable, fmt.Sprintf("%s: first event at rev %d, before its start", name, got[0].KV.ModRev))
	}
	gotBy := map[evKey]history.Event{}
	for _, ev := range got {
		gotBy[evKey{ev.KV.ModRev, ev.KV.Key}] = ev
		if (ev.Delete && w.NoDelete) || (!ev.Delete && w.NoPut) {
			v.Add(WatchPrevKV, fmt.Sprintf("%s: filtered-out event %q at rev %d delivered", name, ev.KV.Key, ev.KV.ModRev))
		}
		if !inRange(ev.KV.Key, w.Key, w.End) {
			v.Add(WatchReliable, fmt.Sprintf("%s: event for %q outside the watched range", name, ev.KV.Key))
		}
	}
	missing := 0
	for _, ev := range want {
		g, ok := gotBy[evKey{ev.KV.ModRev, ev.KV.Key}]
		if !ok {
			if missing++; missing <= 3 {
				v.Add(WatchReliable, fmt.Sprintf("%s: event %q at rev %d never arrived (stream reached rev %d)", name, ev.KV.Key, ev.KV.ModRev, upTo))
			}
			continue
		}
		if g.Delete != ev.Delete || (!ev.Delete && g.KV != ev.KV) {
			v.Add(WatchReliable, fmt.Sprintf("%s: event %q at rev %d is %+v, the members' is %+v", name, ev.KV.Key, ev.KV.ModRev, g, ev))
		}
		switch {
		case w.PrevKV && g.Prev == nil && ev.Prev != nil && compactedBy(ev.KV.ModRev, arrived[evKey{ev.KV.ModRev, ev.KV.Key}]):
		case w.PrevKV && !samePrev(g.Prev, ev.Prev):
			v.Add(WatchPrevKV, fmt.Sprintf("%s: event %q at rev %d prev_kv %+v, the members' %+v", name, ev.KV.Key, ev.KV.ModRev, g.Prev, ev.Prev))
		case !w.PrevKV && g.Prev != nil:
			v.Add(WatchPrevKV, fmt.Sprintf("%s: event %q at rev %d carries prev_kv not asked for", name, ev.KV.Key, ev.KV.ModRev))
		}
	}
	if missing > 3 {
		v.Add(WatchReliable, fmt.Sprintf("%s: ... %d events missing in all", name, missing))
	}
}

func samePrev(a, b *history.KV) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
