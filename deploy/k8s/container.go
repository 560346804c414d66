package k8s

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The values a kubelet would give a pod's downward-API fields; any value of
// the right form serves the checks.
const (
	ExamplePodIP    = "10.244.0.17"
	ExampleNodeName = "node-1"
)

// Env is the container's environment as the kubelet would make it: envFrom
// ConfigMaps (looked up in the set), then env in order, $(VAR) references
// expanded, downward-API fields filled with example values (the pod's name
// is the workload's name with a suffix). A reference to a ConfigMap, key,
// label or field the set cannot give is an error, as it would stop the pod.
func (s *Set) Env(pc PodContainer) (map[string]string, error) {
	env := map[string]string{}
	c := pc.Container
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, _ := s.Get("ConfigMap", from.ConfigMapRef.Name).(*corev1.ConfigMap)
			if cm == nil {
				return nil, fmt.Errorf("%s: envFrom ConfigMap %q: not in %s", pc, from.ConfigMapRef.Name, s.Dir)
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		default:
			return nil, fmt.Errorf("%s: envFrom other than a ConfigMap", pc)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = Expand(e.Value, env)
			continue
		}
		v, err := s.valueFrom(pc, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("%s: env %s: %w", pc, e.Name, err)
		}
		env[e.Name] = v
	}
	return env, nil
}

func (s *Set) valueFrom(pc PodContainer, from *corev1.EnvVarSource) (string, error) {
	switch {
	case from.FieldRef != nil:
		return pc.field(from.FieldRef.FieldPath)
	case from.ResourceFieldRef != nil:
		r := from.ResourceFieldRef
		target := pc.Container
		if r.ContainerName != "" && r.ContainerName != target.Name {
			return "", fmt.Errorf("resourceFieldRef of container %q, not this one", r.ContainerName)
		}
		switch r.Resource {
		case "limits.cpu":
			q, ok := target.Resources.Limits[corev1.ResourceCPU]
			if !ok {
				return "", fmt.Errorf("limits.cpu: the container has no CPU limit (the node's cores would be used)")
			}
			div := 1.0
			if !r.Divisor.IsZero() {
				div = r.Divisor.AsApproximateFloat64()
			}
			// The kubelet rounds up, as here.
			return fmt.Sprint(int64(math.Ceil(q.AsApproximateFloat64() / div))), nil
		default:
			return "", fmt.Errorf("resourceFieldRef %s: not one these checks know", r.Resource)
		}
	case from.ConfigMapKeyRef != nil:
		cm, _ := s.Get("ConfigMap", from.ConfigMapKeyRef.Name).(*corev1.ConfigMap)
		if cm == nil {
			return "", fmt.Errorf("ConfigMap %q: not in %s", from.ConfigMapKeyRef.Name, s.Dir)
		}
		v, ok := cm.Data[from.ConfigMapKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("ConfigMap %q has no key %q", from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Key)
		}
		return v, nil
	}
	return "", fmt.Errorf("a valueFrom these checks do not know")
}

// labelRef is a downward-API label path: metadata.labels['name'].
var labelRef = regexp.MustCompile(`^metadata\.labels\['([^']+)'\]$`)

func (pc PodContainer) field(fieldPath string) (string, error) {
	switch fieldPath {
	case "metadata.name":
		if pc.Kind == "StatefulSet" {
			return pc.Name + "-0", nil
		}
		return pc.Name + "-5d8f7c9b4-x2x7q", nil
	case "metadata.namespace":
		return pc.Namespace, nil
	case "status.podIP":
		return ExamplePodIP, nil
	case "spec.nodeName":
		return ExampleNodeName, nil
	}
	if m := labelRef.FindStringSubmatch(fieldPath); m != nil {
		if v, ok := pc.Labels[m[1]]; ok {
			return v, nil
		}
		// The Job controller labels its pods with the Job's name.
		if pc.Kind == "Job" && (m[1] == "batch.kubernetes.io/job-name" || m[1] == "job-name") {
			return pc.Name, nil
		}
		return "", fmt.Errorf("%s: the pod has no label %q", fieldPath, m[1])
	}
	return "", fmt.Errorf("fieldRef %s: not one these checks know", fieldPath)
}

// varRef is a $(NAME) reference, which the kubelet expands in env values,
// commands and args.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// Expand replaces the $(NAME) references in s with env's values, leaving
// the ones env lacks as they are (as the kubelet does).
func Expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// Argv is the container's command line after the program's name, with
// $(NAME) references expanded from env. A reference env lacks is an error:
// the program would get it as text.
func (pc PodContainer) Argv(env map[string]string) ([]string, error) {
	words := append(append([]string{}, pc.Container.Command[1:]...), pc.Container.Args...)
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = Expand(w, env)
		if m := varRef.FindString(out[i]); m != "" {
			return nil, fmt.Errorf("%s: argument %q: %s is not in the environment", pc, w, m)
		}
	}
	return out, nil
}

// mountOf returns the container's mount whose folder holds p (the deepest),
// and its volume.
func (pc PodContainer) mountOf(p string) (*corev1.VolumeMount, *corev1.Volume) {
	p = path.Clean(p)
	var best *corev1.VolumeMount
	for i := range pc.Container.VolumeMounts {
		m := &pc.Container.VolumeMounts[i]
		dir := path.Clean(m.MountPath)
		if (p == dir || strings.HasPrefix(p, dir+"/")) && (best == nil || len(dir) > len(best.MountPath)) {
			best = m
		}
	}
	if best == nil {
		return nil, nil
	}
	for i := range pc.Spec.Volumes {
		if pc.Spec.Volumes[i].Name == best.Name {
			return best, &pc.Spec.Volumes[i]
		}
	}
	return best, nil
}

// Writable says why the container cannot write under folder p, or nil when
// it can: p must be on a mounted emptyDir or claim that is not read-only,
// or on the root file system when that is writable.
func (s *Set) Writable(pc PodContainer, p string) error {
	m, v := pc.mountOf(p)
	if m == nil {
		if sc := pc.Container.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			return fmt.Errorf("%s: %s is on the read-only root file system (no volume is mounted over it)", pc, p)
		}
		return nil
	}
	if m.ReadOnly {
		return fmt.Errorf("%s: %s is on volume %s, mounted read-only", pc, p, m.Name)
	}
	if v != nil && v.EmptyDir == nil && v.PersistentVolumeClaim == nil {
		return fmt.Errorf("%s: %s is on volume %s, which is not an emptyDir or a claim", pc, p, m.Name)
	}
	if v == nil && !s.claimTemplate(pc, m.Name) {
		return fmt.Errorf("%s: %s is on volume %s, which the pod does not define", pc, p, m.Name)
	}
	return nil
}

// claimTemplate says whether the StatefulSet of pc has a volume claim
// template of that name (its pods' volumes are made from them).
func (s *Set) claimTemplate(pc PodContainer, name string) bool {
	for _, o := range s.Objects {
		if o.Kind != "StatefulSet" || o.Name != pc.Name {
			continue
		}
		for _, t := range statefulSetClaims(o.Value) {
			if t == name {
				return true
			}
		}
	}
	return false
}

// SecretFile says which Secret and key the file at p comes from: the
// container must mount, at p's folder, a Secret volume that (without
// items, or through them) holds a key of that name.
func (pc PodContainer) SecretFile(p string) (secret, key string, err error) {
	m, v := pc.mountOf(p)
	if m == nil || v == nil {
		return "", "", fmt.Errorf("%s: %s: no volume is mounted there", pc, p)
	}
	if v.Secret == nil {
		return "", "", fmt.Errorf("%s: %s: volume %s is not a Secret", pc, p, v.Name)
	}
	rel := strings.TrimPrefix(path.Clean(p), path.Clean(m.MountPath)+"/")
	if m.SubPath != "" {
		rel = path.Join(m.SubPath, rel)
	}
	if len(v.Secret.Items) == 0 {
		return v.Secret.SecretName, rel, nil
	}
	for _, it := range v.Secret.Items {
		if it.Path == rel {
			return v.Secret.SecretName, it.Key, nil
		}
	}
	return "", "", fmt.Errorf("%s: %s: Secret volume %s lists no item at %s", pc, p, v.Name, rel)
}

// ContainerPort returns the container's port of that name, 0 when none.
func (pc PodContainer) ContainerPort(name string) int32 {
	for _, p := range pc.Container.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func statefulSetClaims(v any) []string {
	ss, ok := v.(*appsv1.StatefulSet)
	if !ok {
		return nil
	}
	var names []string
	for _, t := range ss.Spec.VolumeClaimTemplates {
		names = append(names, t.Name)
	}
	return names
}
