// Package deploy checks deploy/kubernetes/*.yaml against the Kubernetes API:
// every document is decoded strictly (unknown or duplicate fields, wrong
// types are errors) into the k8s.io/api types of its apiVersion and kind,
// then the parts the proxy's drain depends on are checked.
package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// decodeAll decodes every YAML document of every manifest strictly.
func decodeAll(t *testing.T) []runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{appsv1.AddToScheme, corev1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests found (%v)", err)
	}
	var objs []runtime.Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			obj, gvk, err := decoder.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i, err)
			}
			t.Logf("%s: %s %s", filepath.Base(f), gvk.Kind, obj.(interface{ GetName() string }).GetName())
			objs = append(objs, obj)
		}
	}
	return objs
}

// flagDuration reads --name=DURATION from a container's args.
func flagDuration(t *testing.T, args []string, name string) time.Duration {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("--%s: %v", name, err)
			}
			return d
		}
	}
	t.Fatalf("no --%s in args %v", name, args)
	return 0
}

// namedPort checks that a probe's or Service's port names a container port.
func namedPort(t *testing.T, c corev1.Container, p intstr.IntOrString, what string) {
	t.Helper()
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return
		}
	}
	t.Errorf("%s: port %s is not a port of container %s", what, p.String(), c.Name)
}

func TestManifests(t *testing.T) {
	var dep *appsv1.Deployment
	var svc *corev1.Service
	var pdb *policyv1.PodDisruptionBudget
	for _, o := range decodeAll(t) {
		switch v := o.(type) {
		case *appsv1.Deployment:
			dep = v
		case *corev1.Service:
			svc = v
		case *policyv1.PodDisruptionBudget:
			pdb = v
		}
	}
	if dep == nil || svc == nil || pdb == nil {
		t.Fatalf("want a Deployment, a Service and a PodDisruptionBudget; got %v %v %v", dep != nil, svc != nil, pdb != nil)
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)
	sel := labels.SelectorFromSet(dep.Spec.Selector.MatchLabels)
	if !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", sel, podLabels)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector does not match the pods")
	}
	if !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
		t.Errorf("PodDisruptionBudget selector does not match the pods")
	}

	c := dep.Spec.Template.Spec.Containers[0]
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/livez", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet probe", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe path = %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		}
		namedPort(t, c, p.probe.HTTPGet.Port, p.name+" probe")
	}
	for _, sp := range svc.Spec.Ports {
		namedPort(t, c, sp.TargetPort, "Service port "+sp.Name)
	}

	// The pod must outlive the drain: grace (readiness off, still serving) plus timeout.
	grace := flagDuration(t, c.Args, "drain-grace-period")
	drainTimeout := flagDuration(t, c.Args, "drain-timeout")
	tgp := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if tgp <= grace+drainTimeout {
		t.Errorf("terminationGracePeriodSeconds %v must exceed drain grace %v + timeout %v", tgp, grace, drainTimeout)
	}
	// Readiness must drop out of the Service before the grace period ends.
	r := c.ReadinessProbe
	if detect := time.Duration(r.PeriodSeconds*r.FailureThreshold) * time.Second; detect >= grace {
		t.Errorf("readiness detection %v is not shorter than --drain-grace-period %v", detect, grace)
	}
}
