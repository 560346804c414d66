package k8s

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// render renders dir or fails the test.
func render(t *testing.T, dir string) *Set {
	t.Helper()
	s, err := Render(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// allSets renders every overlay and every Job folder.
func allSets(t *testing.T) []*Set {
	t.Helper()
	var sets []*Set
	for _, dir := range append(Overlays(), Jobs()...) {
		sets = append(sets, render(t, dir))
	}
	return sets
}

func TestEveryOverlayAndJobRendersAndDecodesStrictly(t *testing.T) {
	if got, want := Overlays(), []string{"overlays/dev", "overlays/gpu", "overlays/ha"}; !slices.Equal(got, want) {
		t.Fatalf("overlays %v, want %v", got, want)
	}
	if len(Jobs()) == 0 {
		t.Fatal("no Job folders under jobs/")
	}
	for _, s := range allSets(t) {
		if len(s.Objects) == 0 {
			t.Errorf("%s renders nothing", s.Dir)
		}
		for _, o := range s.Objects {
			if o.Namespace != "dpcnn" && o.Kind != "Namespace" {
				t.Errorf("%s: %s %s in namespace %q, want dpcnn", s.Dir, o.Kind, o.Name, o.Namespace)
			}
		}
	}
}

// TestStrictDecodingRefusesUnknownFields shows that the decoding the other
// tests rely on would catch a misspelt field, which a plain decoding would
// drop without a word.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	extra := map[string]string{
		"test/kustomization.yaml": "resources: [../base]\npatches:\n  - path: typo.yaml\n",
		"test/typo.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  template:
    spec:
      terminationGracePeriod: 10
`,
	}
	_, err := Render("test", extra)
	if err == nil || !strings.Contains(err.Error(), "terminationGracePeriod") {
		t.Fatalf("a misspelt field rendered: err %v", err)
	}
}

func replicas(t *testing.T, s *Set, kind, name string) int32 {
	t.Helper()
	switch v := s.Get(kind, name).(type) {
	case *appsv1.Deployment:
		if v.Spec.Replicas == nil {
			return -1
		}
		return *v.Spec.Replicas
	case *appsv1.StatefulSet:
		return *v.Spec.Replicas
	}
	t.Fatalf("%s: no %s %s", s.Dir, kind, name)
	return 0
}

func TestOverlaysRunWhatTheyPromise(t *testing.T) {
	dev, ha, gpu := render(t, "overlays/dev"), render(t, "overlays/ha"), render(t, "overlays/gpu")
	for _, c := range []struct {
		s                           *Set
		etcd, coordinators, workers int32 // -1: owned by the autoscaler
	}{{dev, 1, 1, 2}, {ha, 3, 2, -1}, {gpu, 3, 2, 2}} {
		if got := replicas(t, c.s, "StatefulSet", "etcd"); got != c.etcd {
			t.Errorf("%s: %d etcd members, want %d", c.s.Dir, got, c.etcd)
		}
		if got := replicas(t, c.s, "Deployment", "coordinator"); got != c.coordinators {
			t.Errorf("%s: %d coordinators, want %d", c.s.Dir, got, c.coordinators)
		}
		if got := replicas(t, c.s, "Deployment", "worker"); got != c.workers {
			t.Errorf("%s: %d workers, want %d", c.s.Dir, got, c.workers)
		}
		hasPDB := c.s.Get("PodDisruptionBudget", "etcd") != nil && c.s.Get("PodDisruptionBudget", "coordinator") != nil
		if hasPDB != (c.etcd > 1) {
			t.Errorf("%s: PodDisruptionBudgets %v, want them with more than one member", c.s.Dir, hasPDB)
		}
	}
	// ha: one etcd member and one coordinator per node, enforced.
	for _, s := range []*Set{ha, gpu} {
		for _, pc := range append(s.PodsRunning("etcd"), s.PodsRunning("coordinator")...) {
			a := pc.Spec.Affinity
			if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 ||
				a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey != "kubernetes.io/hostname" ||
				len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 0 {
				t.Errorf("%s: %s: want exactly a required anti-affinity by host, got %+v", s.Dir, pc, a)
			}
		}
	}
	hpa, _ := ha.Get("HorizontalPodAutoscaler", "worker").(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa == nil || hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != "worker" {
		t.Errorf("ha: want a HorizontalPodAutoscaler of deployment/worker, got %+v", hpa)
	}
	if dev.Get("HorizontalPodAutoscaler", "worker") != nil {
		t.Error("dev: an autoscaler would undo kubectl scale")
	}
	// gpu: the GPU image, one GPU each, the taint tolerated, GPU nodes only.
	for _, pc := range gpu.PodsRunning("worker") {
		c := pc.Container
		if c.Image != "dpcnn-gpu:dev" {
			t.Errorf("gpu: worker image %s", c.Image)
		}
		one := resource.MustParse("1")
		if q := c.Resources.Limits["nvidia.com/gpu"]; q.Cmp(one) != 0 {
			t.Errorf("gpu: worker limits nvidia.com/gpu %v, want 1", q.String())
		}
		if len(pc.Spec.Tolerations) == 0 || pc.Spec.Tolerations[0].Key != "nvidia.com/gpu" {
			t.Errorf("gpu: tolerations %+v", pc.Spec.Tolerations)
		}
		if pc.Spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
			t.Errorf("gpu: node selector %v", pc.Spec.NodeSelector)
		}
		env, err := gpu.Env(pc)
		if err != nil {
			t.Fatal(err)
		}
		if env["DPCNN_BACKEND"] != "cuda" {
			t.Errorf("gpu: DPCNN_BACKEND %q, want cuda", env["DPCNN_BACKEND"])
		}
	}
	for _, pc := range dev.PodsRunning("worker") {
		if _, ok := pc.Container.Resources.Limits["nvidia.com/gpu"]; ok || pc.Container.Image != "dpcnn:dev" {
			t.Errorf("dev: a CPU worker asks for a GPU or runs %s", pc.Container.Image)
		}
	}
}

// TestEtcdMembersAgree checks, in every overlay, that the initial cluster
// lists each member by the peer URL it advertises, and that the clients'
// endpoints are the members' advertised client URLs: a mismatch keeps a
// new cluster from forming, or clients from reaching it.
func TestEtcdMembersAgree(t *testing.T) {
	for _, dir := range Overlays() {
		s := render(t, dir)
		pcs := s.PodsRunning("etcd")
		if len(pcs) != 1 {
			t.Fatalf("%s: %d etcd containers", dir, len(pcs))
		}
		n := replicas(t, s, "StatefulSet", "etcd")
		var wantCluster, wantClients []string
		for i := range n {
			env, err := s.Env(pcs[0])
			if err != nil {
				t.Fatal(err)
			}
			member := fmt.Sprintf("etcd-%d", i)
			env["POD_NAME"] = member
			argv, err := pcs[0].Argv(env)
			if err != nil {
				t.Fatal(err)
			}
			wantCluster = append(wantCluster, member+"="+flagValue(argv, "--initial-advertise-peer-urls"))
			wantClients = append(wantClients, flagValue(argv, "--advertise-client-urls"))
		}
		env, _ := s.Env(pcs[0])
		if got := env["ETCD_INITIAL_CLUSTER"]; got != strings.Join(wantCluster, ",") {
			t.Errorf("%s: ETCD_INITIAL_CLUSTER %q, want %q", dir, got, strings.Join(wantCluster, ","))
		}
		for _, program := range []string{"coordinator", "worker"} {
			for _, pc := range s.PodsRunning(program) {
				env, err := s.Env(pc)
				if err != nil {
					t.Fatal(err)
				}
				if got := env["DPCNN_ETCD_ENDPOINTS"]; got != strings.Join(wantClients, ",") {
					t.Errorf("%s: %s: DPCNN_ETCD_ENDPOINTS %q, want %q", dir, pc, got, strings.Join(wantClients, ","))
				}
			}
		}
	}
}

func flagValue(argv []string, name string) string {
	for _, a := range argv {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestPodsAreLockedDown checks the restricted pod security profile (which
// the namespace enforces) and that every container has requests and
// limits.
func TestPodsAreLockedDown(t *testing.T) {
	for _, s := range allSets(t) {
		for _, p := range s.Pods() {
			sc := p.Spec.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: %s/%s: pod securityContext %+v: want non-root and seccomp RuntimeDefault", s.Dir, p.Kind, p.Name, sc)
			}
			for i := range p.Spec.Containers {
				c := &p.Spec.Containers[i]
				csc := c.SecurityContext
				if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
					csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
					csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
					len(csc.Capabilities.Add) != 0 || (csc.Privileged != nil && *csc.Privileged) {
					t.Errorf("%s: %s/%s container %s: securityContext %+v", s.Dir, p.Kind, p.Name, c.Name, csc)
				}
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[r]; !ok {
						t.Errorf("%s: %s/%s container %s: no %s request", s.Dir, p.Kind, p.Name, c.Name, r)
					}
				}
				if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
					t.Errorf("%s: %s/%s container %s: no memory limit", s.Dir, p.Kind, p.Name, c.Name)
				}
				if c.ImagePullPolicy != corev1.PullIfNotPresent {
					t.Errorf("%s: %s/%s container %s: imagePullPolicy %q, want IfNotPresent (images loaded onto nodes)", s.Dir, p.Kind, p.Name, c.Name, c.ImagePullPolicy)
				}
			}
		}
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func labelSelects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil {
		return false
	}
	for _, e := range sel.MatchExpressions {
		if e.Operator != metav1.LabelSelectorOpIn || !slices.Contains(e.Values, labels[e.Key]) {
			return false
		}
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort finds a port of pod by name or number ("" and 0: none).
func containerPort(p Pod, name string, number int32) (corev1.ContainerPort, bool) {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if (name != "" && cp.Name == name) || (number != 0 && cp.ContainerPort == number) {
				return cp, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

func TestWorkloadsSelectTheirOwnPods(t *testing.T) {
	for _, s := range allSets(t) {
		for _, o := range s.Objects {
			var sel *metav1.LabelSelector
			var labels map[string]string
			switch v := o.Value.(type) {
			case *appsv1.Deployment:
				sel, labels = v.Spec.Selector, v.Spec.Template.Labels
			case *appsv1.StatefulSet:
				sel, labels = v.Spec.Selector, v.Spec.Template.Labels
				if s.Get("Service", v.Spec.ServiceName) == nil {
					t.Errorf("%s: statefulset/%s: serviceName %q is no Service", s.Dir, o.Name, v.Spec.ServiceName)
				}
			default:
				continue
			}
			if !labelSelects(sel, labels) {
				t.Errorf("%s: %s/%s: selector %v does not match its pods' labels %v", s.Dir, o.Kind, o.Name, sel, labels)
			}
		}
	}
}

// TestServicesReachContainerPorts checks that each Service selects pods of
// the set and that every port it forwards to is a port of each of them.
func TestServicesReachContainerPorts(t *testing.T) {
	for _, s := range allSets(t) {
		for _, o := range s.Objects {
			svc, ok := o.Value.(*corev1.Service)
			if !ok {
				continue
			}
			var pods []Pod
			for _, p := range s.Pods() {
				if selects(svc.Spec.Selector, p.Labels) {
					pods = append(pods, p)
				}
			}
			if len(pods) == 0 {
				t.Errorf("%s: service/%s: selector %v selects no pods", s.Dir, o.Name, svc.Spec.Selector)
			}
			for _, sp := range svc.Spec.Ports {
				for _, p := range pods {
					name, number := sp.TargetPort.StrVal, sp.TargetPort.IntVal
					if sp.TargetPort.String() == "0" {
						number = sp.Port
					}
					if _, ok := containerPort(p, name, number); !ok {
						t.Errorf("%s: service/%s port %s: targetPort %s is no port of %s/%s", s.Dir, o.Name, sp.Name, sp.TargetPort.String(), p.Kind, p.Name)
					}
				}
			}
		}
	}
}

func TestProbesAskContainerPorts(t *testing.T) {
	for _, s := range allSets(t) {
		for _, p := range s.Pods() {
			for _, c := range p.Spec.Containers {
				probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe}
				for kind, pr := range probes {
					if pr == nil {
						continue
					}
					var name string
					var number int32
					switch {
					case pr.HTTPGet != nil:
						name, number = pr.HTTPGet.Port.StrVal, pr.HTTPGet.Port.IntVal
					case pr.GRPC != nil:
						number = pr.GRPC.Port
					case pr.TCPSocket != nil:
						name, number = pr.TCPSocket.Port.StrVal, pr.TCPSocket.Port.IntVal
					default:
						t.Errorf("%s: %s/%s: %s probe of a kind not checked", s.Dir, p.Kind, p.Name, kind)
						continue
					}
					if _, ok := containerPort(p, name, number); !ok {
						t.Errorf("%s: %s/%s: %s probe asks port %q/%d, not a container port", s.Dir, p.Kind, p.Name, kind, name, number)
					}
				}
			}
		}
	}
}
