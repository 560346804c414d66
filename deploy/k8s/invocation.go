package k8s

import (
	"sort"
	"strings"
)

// Invocation is one container's program as the kubelet would start it: its
// environment and its arguments (after the program's name), resolved.
type Invocation struct {
	Set *Set // where it was rendered
	PodContainer
	Env  map[string]string
	Argv []string
}

// Invocations lists every container of the set that runs program, with
// its environment and arguments resolved (Env, Argv).
func (s *Set) Invocations(program string) ([]Invocation, error) {
	var out []Invocation
	for _, pc := range s.PodsRunning(program) {
		inv, err := s.Invocation(pc)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// Invocation resolves one container's environment and arguments.
func (s *Set) Invocation(pc PodContainer) (Invocation, error) {
	env, err := s.Env(pc)
	if err != nil {
		return Invocation{}, err
	}
	argv, err := pc.Argv(env)
	if err != nil {
		return Invocation{}, err
	}
	return Invocation{Set: s, PodContainer: pc, Env: env, Argv: argv}, nil
}

// Unread lists, sorted, the variables of the invocation's environment that
// begin with prefix (DPCNN_) and that reads does not name: settings the
// program would ignore without a word (a misspelt name, one it dropped).
func (inv Invocation) Unread(prefix string, reads map[string]bool) []string {
	var out []string
	for k := range inv.Env {
		if strings.HasPrefix(k, prefix) && !reads[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// RenderOverlays renders every overlay, each with extra on top (folders
// such as the Jobs', whose objects run against an overlay's Services and
// Secrets).
func RenderOverlays(extra ...string) ([]*Set, error) {
	var sets []*Set
	for _, dir := range Overlays() {
		s, err := Render(dir, nil)
		if err != nil {
			return nil, err
		}
		for _, e := range extra {
			x, err := Render(e, nil)
			if err != nil {
				return nil, err
			}
			s.Objects = append(s.Objects, x.Objects...)
			s.Dir += " + " + e
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// OverlayInvocations is Invocations of program in every overlay, each
// rendered with extra on top (RenderOverlays).
func OverlayInvocations(program string, extra ...string) ([]Invocation, error) {
	sets, err := RenderOverlays(extra...)
	if err != nil {
		return nil, err
	}
	var out []Invocation
	for _, s := range sets {
		invs, err := s.Invocations(program)
		if err != nil {
			return nil, err
		}
		out = append(out, invs...)
	}
	return out, nil
}
