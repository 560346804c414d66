package k8s

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// manifests is every file kustomize reads: the tests render from this copy,
// so they need no working directory and see exactly what is committed.
//
//go:embed base components overlays jobs
var manifests embed.FS

// root is where the manifests lie in the in-memory file system kustomize
// reads, the way they lie in the repository.
const root = "/deploy/k8s"

// Overlays are the folders under overlays/, each a whole deployment.
func Overlays() []string { return dirsUnder("overlays") }

// Jobs are the folders under jobs/, each a Kubernetes Job applied on top of
// an overlay.
func Jobs() []string { return dirsUnder("jobs") }

func dirsUnder(dir string) []string {
	entries, err := manifests.ReadDir(dir)
	if err != nil {
		panic(err) // the embed pattern names the folder
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out
}

// Object is one rendered Kubernetes object, decoded into its k8s.io/api type
// (a *appsv1.Deployment, a *corev1.Service, ...).
type Object struct {
	Kind, Name, Namespace string
	Value                 any
}

// Set is what one kustomization renders to.
type Set struct {
	Dir     string
	Objects []Object
}

// Render runs kustomize (sigs.k8s.io/kustomize/api, as `kubectl apply -k`
// does) on dir, a folder relative to deploy/k8s such as "overlays/dev",
// and decodes every object strictly into its k8s.io/api type: an unknown or
// mistyped field, or a kind this package does not know, is an error.
//
// extra adds files to the in-memory tree first (relative to deploy/k8s), so
// that a test can render a kustomization of its own, such as one that
// combines a component with the base.
func Render(dir string, extra map[string]string) (*Set, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(manifests, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := manifests.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join(root, p), b)
	})
	if err != nil {
		return nil, err
	}
	for p, text := range extra {
		if err := mem.WriteFile(path.Join(root, p), []byte(text)); err != nil {
			return nil, err
		}
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, path.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	set := &Set{Dir: dir}
	for _, r := range resources.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		v, err := Decode(r.GetApiVersion(), r.GetKind(), b)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		set.Objects = append(set.Objects, Object{Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace(), Value: v})
	}
	return set, nil
}

// kinds are the types dpcnn's manifests (and `cnnctl certs --kubernetes`)
// use, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                    func() any { return new(appsv1.StatefulSet) },
	"batch/v1/Job":                           func() any { return new(batchv1.Job) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
}

// Decode decodes one object's YAML strictly into the k8s.io/api type of its
// apiVersion and kind.
func Decode(apiVersion, kind string, b []byte) (any, error) {
	newValue, ok := kinds[apiVersion+"/"+kind]
	if !ok {
		return nil, fmt.Errorf("apiVersion %s, kind %s: not a kind dpcnn deploys", apiVersion, kind)
	}
	v := newValue()
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		return nil, fmt.Errorf("decoding strictly into %T: %w", v, err)
	}
	return v, nil
}

// DecodeAll decodes a multi-document YAML stream (documents split by lines
// of "---") strictly, skipping empty documents.
func DecodeAll(stream []byte) ([]Object, error) {
	var out []Object
	for i, doc := range strings.Split("\n"+string(stream), "\n---") {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name, Namespace string
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if head.Kind == "" && head.APIVersion == "" {
			continue
		}
		v, err := Decode(head.APIVersion, head.Kind, []byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d (%s %s): %w", i, head.Kind, head.Metadata.Name, err)
		}
		out = append(out, Object{Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, Value: v})
	}
	return out, nil
}

// Get returns the object of that kind and name, nil when there is none.
func (s *Set) Get(kind, name string) any {
	for _, o := range s.Objects {
		if o.Kind == kind && o.Name == name {
			return o.Value
		}
	}
	return nil
}

// Pod is the pod template of a workload (Deployment, StatefulSet or Job).
type Pod struct {
	Kind, Name string // the workload's
	Namespace  string
	Labels     map[string]string
	Spec       *corev1.PodSpec
}

// Pods lists the pod templates of every workload in the set, by kind and
// name.
func (s *Set) Pods() []Pod {
	var out []Pod
	for _, o := range s.Objects {
		var t *corev1.PodTemplateSpec
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			t = &v.Spec.Template
		case *appsv1.StatefulSet:
			t = &v.Spec.Template
		case *batchv1.Job:
			t = &v.Spec.Template
		default:
			continue
		}
		out = append(out, Pod{Kind: o.Kind, Name: o.Name, Namespace: o.Namespace, Labels: t.Labels, Spec: &t.Spec})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].Name < out[j].Kind+out[j].Name })
	return out
}

// PodsRunning lists the containers whose command is program (the first
// word of the image's command), with their pods.
func (s *Set) PodsRunning(program string) []PodContainer {
	var out []PodContainer
	for _, p := range s.Pods() {
		for i := range p.Spec.Containers {
			c := &p.Spec.Containers[i]
			if len(c.Command) > 0 && c.Command[0] == program {
				out = append(out, PodContainer{Pod: p, Container: c})
			}
		}
	}
	return out
}

// PodContainer is one container of a pod template.
type PodContainer struct {
	Pod
	Container *corev1.Container
}

func (pc PodContainer) String() string {
	return fmt.Sprintf("%s/%s container %s", strings.ToLower(pc.Kind), pc.Name, pc.Container.Name)
}
