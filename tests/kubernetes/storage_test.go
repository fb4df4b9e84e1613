package kubernetes

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value/encrypt/identity"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc"

	"etcd-grpc-proxy.test/kubernetes/harness"
)

// The value prefix etcd3's own tests store objects with (a test transformer).
const valuePrefix = "test!"

// target is one way to reach the cluster: "direct" or "proxy".
type target struct {
	name string
	c    *cluster
	// prefix is the key prefix of the storage built last, for validation.
	prefix *string
	// errs, when set, gives the target's clients the tolerance of
	// transient errors (see tolerant_test.go) and records every error.
	errs *errLog
}

// client is a Kubernetes etcd client towards the target.
func (tg target) client(t *testing.T) *kubernetes.Client {
	if tg.errs == nil {
		return tg.c.client(t, tg.name)
	}
	kc := tg.c.client(t, tg.name, grpc.WithChainUnaryInterceptor(tg.errs.checkCodes))
	tolerate(kc, tg.errs)
	return kc
}

// store builds Kubernetes' etcd3 storage over a fresh client of the target,
// with a key prefix of its own (the suites assume an empty keyspace; the
// in-process etcd they normally start per test is replaced by one shared
// cluster, so each run gets its own prefix: only the setup is adapted).
func (tg target) store(t *testing.T, suite string) (context.Context, storage.Interface, *kubernetes.Client) {
	kc := tg.client(t)
	kc.Kubernetes = storagetesting.NewKubernetesRecorder(kc.Kubernetes)
	lease := etcd3.NewDefaultLeaseManagerConfig()
	lease.ReuseDurationSeconds = 1
	prefix := uniquePrefix(tg.name, suite)
	*tg.prefix = prefix
	s, closer, err := harness.NewStorage(kc, prefix, "/pods/", storagetesting.NewPrefixTransformer([]byte(valuePrefix), false), lease)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closer)
	return context.Background(), s, kc
}

// cached builds the watch cache (cacher) over the target's etcd3 storage,
// as kube-apiserver does, and waits until it is initialised.
func (tg target) cached(t *testing.T, suite string) (context.Context, storage.Interface, *kubernetes.Client) {
	kc := tg.client(t)
	s, closeStore, err := harness.NewStorage(kc, uniquePrefix(tg.name, suite), "/pods/", identity.NewEncryptCheckTransformer(), etcd3.NewDefaultLeaseManagerConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	ctx := context.Background()
	d, closeCache, err := harness.NewCached(ctx, s, "/pods/")
	if err != nil {
		t.Fatalf("cacher: %v", err)
	}
	t.Cleanup(closeCache)
	return ctx, d, kc
}

func increaseRV(client *clientv3.Client) storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		resp, err := client.KV.Put(ctx, "increaseRV", "ok")
		if err != nil {
			t.Fatalf("Could not update increaseRV: %v", err)
		}
		return resp.Header.Revision
	}
}

// compact compacts etcd through the compact_rev_key Txn, as kube-apiserver
// does, then (with ListFromCacheSnapshot) waits until the store has seen it,
// as etcd3's own tests do.
func compact(s storage.Interface, client *clientv3.Client) storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := storage.APIObjectVersioner{}.ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		// compact_rev_key's version is whatever earlier compactions left:
		// retry with the version etcd reports until this one goes in.
		var expect int64
		for i := 0; i < 5; i++ {
			current, _, compacted, err := etcd3.Compact(ctx, client, expect, int64(rv))
			if err != nil {
				t.Fatal(err)
			}
			if current == expect+1 && compacted == int64(rv) {
				waitCompacted(ctx, t, s, int64(rv))
				return
			}
			expect = current
		}
		t.Fatalf("could not compact to %d", rv)
	}
}

// waitCompacted waits for the store's own view of the compaction.
func waitCompacted(ctx context.Context, t *testing.T, s storage.Interface, rev int64) {
	c, ok := s.(interface{ CompactRevision() int64 })
	if !ok || !utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
		return
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return c.CompactRevision() == rev, nil
	})
	if err != nil {
		t.Fatalf("the store never saw compaction %d", rev)
	}
}

// validation checks the stored form of a created object, as etcd3's tests
// do (under the storage's key prefix: the suites name keys relative to it).
func validation(client *clientv3.Client, prefix string) storagetesting.KeyValidation {
	return func(ctx context.Context, t *testing.T, key string) {
		resp, err := client.KV.Get(ctx, prefix+key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("expecting non empty result on key: %s", key)
		}
		obj, err := runtime.Decode(harness.Codec, resp.Kvs[0].Value[len(valuePrefix):])
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if obj.(*example.Pod).ResourceVersion != "" {
			t.Errorf("stored object has a resourceVersion")
		}
	}
}

// suites: each runs once per target, on a fresh storage.
var suites = []struct {
	name string
	// fresh: the suite assumes a fresh etcd, so it gets a cluster of its own.
	fresh bool
	run   func(t *testing.T, tg target)
}{
	{"Create", false, func(t *testing.T, tg target) {
		ctx, s, c := tg.store(t, "create")
		storagetesting.RunTestCreate(ctx, t, s, validation(c.Client, *tg.prefix))
	}},
	{"CreateWithTTL", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "ttl")
		storagetesting.RunTestCreateWithTTL(ctx, t, s)
	}},
	{"CreateWithKeyExist", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "exist")
		storagetesting.RunTestCreateWithKeyExist(ctx, t, s)
	}},
	{"Get", false, func(t *testing.T, tg target) { ctx, s, _ := tg.store(t, "get"); storagetesting.RunTestGet(ctx, t, s) }},
	{"UnconditionalDelete", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "udel")
		storagetesting.RunTestUnconditionalDelete(ctx, t, s)
	}},
	{"ConditionalDelete", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "cdel")
		storagetesting.RunTestConditionalDelete(ctx, t, s)
	}},
	{"DeleteWithSuggestion", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "dsug")
		storagetesting.RunTestDeleteWithSuggestion(ctx, t, s)
	}},
	{"DeleteWithSuggestionAndConflict", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "dsugc")
		storagetesting.RunTestDeleteWithSuggestionAndConflict(ctx, t, s)
	}},
	{"DeleteWithSuggestionOfDeletedObject", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "dsugd")
		storagetesting.RunTestDeleteWithSuggestionOfDeletedObject(ctx, t, s)
	}},
	{"ValidateDeletionWithSuggestion", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "vdel")
		storagetesting.RunTestValidateDeletionWithSuggestion(ctx, t, s)
	}},
	{"DeleteWithConflict", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "dconf")
		storagetesting.RunTestDeleteWithConflict(ctx, t, s)
	}},
	{"PreconditionalDeleteWithSuggestion", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "pdel")
		storagetesting.RunTestPreconditionalDeleteWithSuggestion(ctx, t, s)
	}},
	{"ListPaging", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "paging")
		storagetesting.RunTestListPaging(ctx, t, s)
	}},
	{"GetListNonRecursive", false, func(t *testing.T, tg target) {
		ctx, s, c := tg.store(t, "nonrec")
		storagetesting.RunTestGetListNonRecursive(ctx, t, increaseRV(c.Client), s)
	}},
	{"GetListRecursivePrefix", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "recpre")
		storagetesting.RunTestGetListRecursivePrefix(ctx, t, s)
	}},
	{"GuaranteedUpdateWithTTL", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "gutl")
		storagetesting.RunTestGuaranteedUpdateWithTTL(ctx, t, s)
	}},
	{"GuaranteedUpdateWithConflict", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "guconf")
		storagetesting.RunTestGuaranteedUpdateWithConflict(ctx, t, s)
	}},
	{"GuaranteedUpdateWithSuggestionAndConflict", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "gusug")
		storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict(ctx, t, s)
	}},
	{"ConsistentList", false, func(t *testing.T, tg target) {
		ctx, s, c := tg.store(t, "clist")
		storagetesting.RunTestConsistentList(ctx, t, s, increaseRV(c.Client), false, true, false)
	}},
	{"CompactRevision", true, func(t *testing.T, tg target) {
		// As etcd3's own test: the store sees compactions made by others
		// through its watch on compact_rev_key, enabled by ListFromCacheSnapshot.
		featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, true)
		ctx, s, c := tg.store(t, "crev")
		storagetesting.RunTestCompactRevision(ctx, t, s, increaseRV(c.Client), compact(s, c.Client))
	}},
	{"ListContinuation", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "cont")
		storagetesting.RunTestListContinuation(ctx, t, s, nil)
	}},
	{"ListInconsistentContinuation", true, func(t *testing.T, tg target) {
		ctx, s, c := tg.store(t, "icont")
		storagetesting.RunTestListInconsistentContinuation(ctx, t, s, compact(s, c.Client))
	}},
	{"NamespaceScopedList", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "nslist")
		storagetesting.RunTestNamespaceScopedList(ctx, t, s)
	}},
	{"Watch", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "watch")
		storagetesting.RunTestWatch(ctx, t, s)
	}},
	{"DeleteTriggerWatch", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "dtw")
		storagetesting.RunTestDeleteTriggerWatch(ctx, t, s)
	}},
	{"WatchFromZero", true, func(t *testing.T, tg target) {
		ctx, s, c := tg.store(t, "wzero")
		storagetesting.RunTestWatchFromZero(ctx, t, s, compact(s, c.Client))
	}},
	{"WatchFromNonZero", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "wnz")
		storagetesting.RunTestWatchFromNonZero(ctx, t, s)
	}},
	{"DelayedWatchDelivery", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "wdelay")
		storagetesting.RunTestDelayedWatchDelivery(ctx, t, s)
	}},
	{"WatchContextCancel", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "wcancel")
		storagetesting.RunTestWatchContextCancel(ctx, t, s)
	}},
	{"WatcherTimeout", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "wtimeout")
		storagetesting.RunTestWatcherTimeout(ctx, t, s)
	}},
	{"WatchDeleteEventObjectHaveLatestRV", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "wdel")
		storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(ctx, t, s)
	}},
	{"WatchInitializationSignal", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "winit")
		storagetesting.RunTestWatchInitializationSignal(ctx, t, s)
	}},
	{"ProgressNotify", false, func(t *testing.T, tg target) {
		ctx, s, c := tg.store(t, "progress")
		storagetesting.RunOptionalTestProgressNotify(ctx, t, s, increaseRV(c.Client))
	}},
	{"WatchDispatchBookmarkEvents", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "bookmarks")
		storagetesting.RunTestWatchDispatchBookmarkEvents(ctx, t, s, false)
	}},
	{"SendInitialEventsBackwardCompatibility", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "sie")
		storagetesting.RunSendInitialEventsBackwardCompatibility(ctx, t, s)
	}},
	{"WatchSemantics", true, func(t *testing.T, tg target) {
		ctx, s, _ := tg.store(t, "wsem")
		storagetesting.RunWatchSemantics(ctx, t, s)
	}},
	// Through the watch cache (cacher), with Kubernetes 1.37's default
	// gates: ConsistentListFromCache (it sends progress requests and waits
	// for its watch to reach etcd's revision) and WatchList.
	{"Cacher/ConsistentList", true, func(t *testing.T, tg target) {
		for _, snapshot := range []bool{true, false} {
			t.Run(fmt.Sprintf("ListFromCacheSnapshot=%v", snapshot), func(t *testing.T) {
				featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, snapshot)
				ctx, s, c := tg.cached(t, "cclist")
				storagetesting.RunTestConsistentList(ctx, t, s, increaseRV(c.Client), true, true, snapshot)
			})
		}
	}},
	{"Cacher/GetListNonRecursive", false, func(t *testing.T, tg target) {
		ctx, s, c := tg.cached(t, "cnonrec")
		storagetesting.RunTestGetListNonRecursive(ctx, t, increaseRV(c.Client), s)
	}},
	{"Cacher/Watch", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.cached(t, "cwatch")
		storagetesting.RunTestWatch(ctx, t, s)
	}},
	{"Cacher/WatchDispatchBookmarkEvents", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.cached(t, "cbookmarks")
		storagetesting.RunTestWatchDispatchBookmarkEvents(ctx, t, s, true)
	}},
	{"Cacher/SendInitialEventsBackwardCompatibility", false, func(t *testing.T, tg target) {
		ctx, s, _ := tg.cached(t, "csie")
		storagetesting.RunSendInitialEventsBackwardCompatibility(ctx, t, s)
	}},
}

// TestStorageSuites runs every suite directly against etcd and through the
// proxy: the outcomes must be the same (every suite passes on both).
func TestStorageSuites(t *testing.T) {
	c := theCluster(t)
	for _, name := range []string{"direct", "proxy"} {
		t.Run(name, func(t *testing.T) {
			for _, s := range suites {
				t.Run(s.name, func(t *testing.T) {
					tg := target{name: name, c: c, prefix: new(string)}
					if s.fresh {
						tg.c = freshCluster(t)
					}
					s.run(t, tg)
				})
			}
		})
	}
}
