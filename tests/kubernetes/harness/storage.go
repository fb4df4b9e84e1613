package harness

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/cacher"
	"k8s.io/apiserver/pkg/storage/etcd3"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/utils/clock"

	"go.etcd.io/etcd/client/v3/kubernetes"
)

var scheme = runtime.NewScheme()

// Codec encodes the example API's pods, as the apiserver's own storage tests do.
var Codec runtime.Codec

func init() {
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(scheme))
	utilruntime.Must(examplev1.AddToScheme(scheme))
	Codec = apitesting.TestCodec(serializer.NewCodecFactory(scheme), examplev1.SchemeGroupVersion)
}

func newPod() runtime.Object     { return &example.Pod{} }
func newPodList() runtime.Object { return &example.PodList{} }

// Closer stops what a storage started.
type Closer func()

// NewStorage is Kubernetes' etcd3 storage of example pods under prefix +
// resourcePrefix, over kc.
func NewStorage(kc *kubernetes.Client, prefix, resourcePrefix string, transformer value.Transformer, lease etcd3.LeaseManagerConfig) (storage.Interface, Closer, error) {
	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(kc.Client, 0, clock.RealClock{}, nil)
	s, err := etcd3.New(kc, compactor, Codec, newPod, newPodList, prefix, resourcePrefix,
		schema.GroupResource{Resource: "pods"}, transformer, lease, etcd3.NewDefaultDecoder(Codec, versioner), versioner)
	if err != nil {
		compactor.Stop()
		return nil, nil, err
	}
	return s, func() { s.Close(); compactor.Stop() }, nil
}

// NewCached is the watch cache (cacher) over s, as kube-apiserver builds
// it, once initialised.
func NewCached(ctx context.Context, s storage.Interface, resourcePrefix string) (storage.Interface, Closer, error) {
	config := cacher.Config{
		Storage:             s,
		Versioner:           storage.APIObjectVersioner{},
		GroupResource:       schema.GroupResource{Resource: "pods"},
		EventsHistoryWindow: cacher.DefaultEventFreshDuration,
		ResourcePrefix:      resourcePrefix,
		KeyFunc:             func(obj runtime.Object) (string, error) { return storage.NamespaceKeyFunc(resourcePrefix, obj) },
		GetAttrsFunc:        podAttrs,
		NewFunc:             newPod,
		NewListFunc:         newPodList,
		Codec:               Codec,
		Clock:               clock.RealClock{},
	}
	c, err := cacher.NewCacherFromConfig(config)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Wait(ctx); err != nil {
		c.Stop()
		return nil, nil, err
	}
	d := cacher.NewCacheDelegator(c, s)
	return d, func() { d.Stop(); c.Stop() }, nil
}

func podAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	pod, ok := obj.(*example.Pod)
	if !ok {
		return nil, nil, fmt.Errorf("not a pod")
	}
	f := fields.Set{"metadata.name": pod.Name, "metadata.namespace": pod.Namespace, "spec.nodeName": pod.Spec.NodeName}
	return labels.Set(pod.Labels), f, nil
}
