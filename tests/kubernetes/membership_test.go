package kubernetes

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// TestStorageSuitesWhileMembershipChanges runs the suites that need no
// fresh etcd again and again, with a writer updating objects beside them,
// while a member is added and the first one killed, on a cluster per
// target: through the proxy (given only the first member) and directly (a
// client given the members that stay; the first one, about to die, is the
// proxy's only endpoint).
//
// What etcd promises during the change, and so what is asserted: requests
// may fail with the transient errors etcd documents for it (transientKinds:
// timed out, proposal dropped, no leader, leader changed, connection
// lost); the clients tolerate those (reads retried, writes of unknown
// outcome resolved by reading the key back) and they must be the only
// errors that are tolerated, on both targets alike. Every other error
// reaches the suites, which must pass; an error the proxy's clients got
// outside that set must be one the direct clients got too. The writer's
// objects keep the storage semantics: every object created is there once,
// every update that reported success is visible (a counter never below the
// acknowledged updates, nor above the attempted ones), and the resource
// versions and counters each update returns only grow.
func TestStorageSuitesWhileMembershipChanges(t *testing.T) {
	logs := map[string]*errLog{}
	for _, name := range []string{"direct", "proxy"} {
		logs[name] = newErrLog()
		t.Run(name, func(t *testing.T) {
			c := freshCluster(t)
			c.directSkipsFirst = true
			errs := logs[name]
			w := startWriter(t, target{name: name, c: c, prefix: new(string), errs: errs})
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(500 * time.Millisecond)
				if err := c.AddMemberThenKillFirst(memberFlags...); err != nil {
					t.Errorf("member add, then the first member killed: %v", err)
				}
			}()
			start := time.Now()
			for round := 0; ; round++ {
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				for _, s := range suites {
					if s.fresh {
						continue
					}
					// The suites count revisions: the writer waits.
					w.mu.Lock()
					t.Run(s.name, func(t *testing.T) {
						s.run(t, target{name: name, c: c, prefix: new(string), errs: errs})
					})
					w.mu.Unlock()
				}
				// One whole round after the change has completed.
				if finished {
					t.Logf("%d rounds in %v", round+1, time.Since(start).Round(time.Second))
					break
				}
			}
			w.stopAndCheck(t)
			t.Logf("errors from etcd: %v", errs)
		})
	}
	// The kinds of errors outside the transient set (those the suites
	// provoke and check) that the proxy's clients got, the direct ones got.
	_, direct := logs["direct"].snapshot()
	_, proxy := logs["proxy"].snapshot()
	for k := range proxy {
		if _, ok := direct[k]; !ok {
			t.Errorf("through the proxy, an error of a kind the direct clients never got: %q", k)
		}
	}
}

// writer creates a few objects through the etcd3 store and updates them
// (a counter in a label) until stopped, recording what was acknowledged.
// It writes between the suites' runs (they count revisions), in bursts.
type writer struct {
	mu    sync.Mutex
	ctx   context.Context
	s     storage.Interface
	stop  chan struct{}
	done  chan struct{}
	state []*writerObject
	errs  []string
}

type writerObject struct {
	key              string
	created          bool
	acked, attempted int
	lastRV           uint64
	lastN            int
}

const writerObjects = 3

func startWriter(t *testing.T, tg target) *writer {
	ctx, s, _ := tg.store(t, "writer")
	w := &writer{ctx: ctx, s: s, stop: make(chan struct{}), done: make(chan struct{})}
	for i := 0; i < writerObjects; i++ {
		w.state = append(w.state, &writerObject{key: fmt.Sprintf("/pods/writer/p%d", i)})
	}
	go w.run()
	return w
}

func podN(obj runtime.Object) int {
	n, _ := strconv.Atoi(obj.(*example.Pod).Labels["n"])
	return n
}

// failed records an error a write ended in: only a transient one, whose
// outcome is unknown (a write may have been applied), is allowed.
func (w *writer) failed(op string, err error) {
	if _, ok := transientKind(err); !ok {
		w.errs = append(w.errs, fmt.Sprintf("%s: an error that is not transient: %v", op, err))
	}
}

func (w *writer) run() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, o := range w.state {
		for !o.created {
			select {
			case <-w.stop:
				return
			default:
			}
			pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "writer", Labels: map[string]string{"n": "0"}}}
			err := w.s.Create(w.ctx, o.key, pod, &example.Pod{}, 0)
			// Nobody else writes the key: if it exists, an earlier
			// attempt that seemed to fail created it.
			if err == nil || storage.IsExist(err) {
				o.created = true
				break
			}
			w.failed("create "+o.key, err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		for burst := time.Now(); time.Since(burst) < 200*time.Millisecond; {
			w.update()
		}
		// The suites' turn.
		w.mu.Unlock()
		time.Sleep(time.Millisecond)
		w.mu.Lock()
	}
}

// update updates each object once.
func (w *writer) update() {
	for _, o := range w.state {
		o.attempted++
		out := &example.Pod{}
		err := w.s.GuaranteedUpdate(w.ctx, o.key, out, false, nil, func(input runtime.Object, _ storage.ResponseMeta) (runtime.Object, *uint64, error) {
			pod := input.(*example.Pod).DeepCopy()
			pod.Labels["n"] = strconv.Itoa(podN(pod) + 1)
			return pod, nil, nil
		}, nil)
		if err != nil {
			w.failed("update "+o.key, err)
			continue
		}
		rv, err := storage.APIObjectVersioner{}.ObjectResourceVersion(out)
		if err != nil {
			w.errs = append(w.errs, fmt.Sprintf("update %s: %v", o.key, err))
			continue
		}
		if n := podN(out); rv <= o.lastRV || n <= o.lastN {
			w.errs = append(w.errs, fmt.Sprintf("update %s acknowledged at resourceVersion %d with counter %d, after %d with %d", o.key, rv, n, o.lastRV, o.lastN))
		} else {
			o.lastRV, o.lastN = rv, n
		}
		o.acked++
	}
}

// stopAndCheck stops the writer and checks its objects in a consistent list.
func (w *writer) stopAndCheck(t *testing.T) {
	close(w.stop)
	<-w.done
	for _, e := range w.errs {
		t.Error("writer: " + e)
	}
	list := &example.PodList{}
	err := w.s.GetList(w.ctx, "/pods/writer", storage.ListOptions{Recursive: true, Predicate: storage.Everything}, list)
	if err != nil {
		t.Fatalf("writer: list: %v", err)
	}
	listRV, _ := strconv.ParseUint(list.ResourceVersion, 10, 64)
	seen := map[string]example.Pod{}
	var names []string
	for _, p := range list.Items {
		if _, dup := seen[p.Name]; dup {
			t.Errorf("writer: %s listed twice", p.Name)
		}
		seen[p.Name] = p
		names = append(names, p.Name)
	}
	sort.Strings(names)
	if len(list.Items) != writerObjects {
		t.Errorf("writer: listed %v, want %d objects", names, writerObjects)
	}
	acked := 0
	for i, o := range w.state {
		p, ok := seen[fmt.Sprintf("p%d", i)]
		if !ok {
			t.Errorf("writer: %s created, then lost", o.key)
			continue
		}
		rv, _ := strconv.ParseUint(p.ResourceVersion, 10, 64)
		n := podN(&p)
		if n < o.acked || n > o.attempted || n < o.lastN {
			t.Errorf("writer: %s has counter %d after %d updates acknowledged (last with %d) of %d attempted", o.key, n, o.acked, o.lastN, o.attempted)
		}
		if rv < o.lastRV || listRV < o.lastRV {
			t.Errorf("writer: %s at resourceVersion %d (list at %s), after an update acknowledged at %d", o.key, rv, list.ResourceVersion, o.lastRV)
		}
		acked += o.acked
	}
	t.Logf("writer: %d updates acknowledged, all visible", acked)
}
