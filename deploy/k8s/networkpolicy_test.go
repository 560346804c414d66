package k8s

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// endpoint is one side of a connection: a pod's labels and its namespace's,
// and, for the side that listens, the port.
type endpoint struct {
	namespace string
	nsLabels  map[string]string
	labels    map[string]string
	port      corev1.ContainerPort // the listener's
}

// allowed evaluates the set's NetworkPolicies the way the API defines
// them: a connection passes when the source's egress allows it (or no
// egress policy selects the source) and the destination's ingress allows
// it (or no ingress policy selects the destination).
func allowed(s *Set, from, to endpoint) bool {
	return direction(s, networkingv1.PolicyTypeEgress, from, to) && direction(s, networkingv1.PolicyTypeIngress, to, from)
}

// direction: does the policy side of pod self (the source for egress, the
// destination for ingress) allow talking to peer, with dst the listener?
func direction(s *Set, typ networkingv1.PolicyType, self, peer endpoint) bool {
	dst := peer
	if typ == networkingv1.PolicyTypeIngress {
		dst = self
	}
	selected := false
	for _, o := range s.Objects {
		np, ok := o.Value.(*networkingv1.NetworkPolicy)
		if !ok || o.Namespace != self.namespace || !hasType(np, typ) {
			continue
		}
		if !emptyOrSelects(np.Spec.PodSelector.MatchLabels, self.labels) {
			continue
		}
		selected = true
		if typ == networkingv1.PolicyTypeEgress {
			for _, r := range np.Spec.Egress {
				if peersMatch(r.To, o.Namespace, peer) && portsMatch(r.Ports, dst.port) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Ingress {
				if peersMatch(r.From, o.Namespace, peer) && portsMatch(r.Ports, dst.port) {
					return true
				}
			}
		}
	}
	return !selected
}

func hasType(np *networkingv1.NetworkPolicy, typ networkingv1.PolicyType) bool {
	for _, t := range np.Spec.PolicyTypes {
		if t == typ {
			return true
		}
	}
	return false
}

func emptyOrSelects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNamespace string, e endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			continue // none used; an ipBlock never matches a pod here
		}
		nsOK := e.namespace == policyNamespace
		if p.NamespaceSelector != nil {
			nsOK = emptyOrSelects(p.NamespaceSelector.MatchLabels, e.nsLabels)
		}
		podOK := p.PodSelector == nil || emptyOrSelects(p.PodSelector.MatchLabels, e.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, listener corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	proto := listener.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil || (p.Port.StrVal != "" && p.Port.StrVal == listener.Name) || (p.Port.StrVal == "" && p.Port.IntVal == listener.ContainerPort) {
			return true
		}
	}
	return false
}

func TestNetworkPoliciesAllowOnlyTheNeededPaths(t *testing.T) {
	for _, dir := range Overlays() {
		s := render(t, dir)
		jobs := render(t, "jobs/submit")
		s.Objects = append(s.Objects, jobs.Objects...)

		ns := map[string]string{"kubernetes.io/metadata.name": "dpcnn"}
		pod := func(name string) Pod {
			for _, p := range s.Pods() {
				if p.Labels["app.kubernetes.io/name"] == name {
					return p
				}
			}
			t.Fatalf("%s: no pod labelled %s", dir, name)
			return Pod{}
		}
		at := func(name, port string) endpoint {
			p := pod(name)
			cp, ok := containerPort(p, port, 0)
			if port != "" && !ok {
				t.Fatalf("%s: %s has no port %s", dir, name, port)
			}
			return endpoint{namespace: "dpcnn", nsLabels: ns, labels: p.Labels, port: cp}
		}
		dns := endpoint{namespace: "kube-system", nsLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"},
			labels: map[string]string{"k8s-app": "kube-dns"}, port: corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
		prometheus := endpoint{namespace: "monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"},
			labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
		stranger := endpoint{namespace: "default", nsLabels: map[string]string{"kubernetes.io/metadata.name": "default"},
			labels: map[string]string{"app": "other"}}

		for _, c := range []struct {
			what     string
			from, to endpoint
			want     bool
		}{
			{"worker to etcd", at("worker", ""), at("etcd", "client"), true},
			{"worker to coordinator", at("worker", ""), at("coordinator", "grpc"), true},
			{"coordinator to etcd", at("coordinator", ""), at("etcd", "client"), true},
			{"coordinator to coordinator (checkpoints)", at("coordinator", ""), at("coordinator", "grpc"), true},
			{"etcd to etcd (peers)", at("etcd", ""), at("etcd", "peer"), true},
			{"cnnctl Job to coordinator", at("cnnctl", ""), at("coordinator", "grpc"), true},
			{"worker to DNS", at("worker", ""), dns, true},
			{"cnnctl Job to DNS", at("cnnctl", ""), dns, true},
			{"prober to coordinator health", stranger, at("coordinator", "health"), true},
			{"prober to etcd health", stranger, at("etcd", "metrics"), true},
			{"Prometheus to coordinator metrics", prometheus, at("coordinator", "metrics"), true},
			{"Prometheus to worker metrics", prometheus, at("worker", "metrics"), true},
			{"worker to worker reduce service", at("worker", ""), at("worker", "reduce"), true},

			{"cnnctl Job to etcd", at("cnnctl", ""), at("etcd", "client"), false},
			{"worker to etcd peers", at("worker", ""), at("etcd", "peer"), false},
			{"worker to worker", at("worker", ""), at("worker", "metrics"), false},
			{"another namespace to coordinator gRPC", stranger, at("coordinator", "grpc"), false},
			{"another namespace to etcd", stranger, at("etcd", "client"), false},
			{"another namespace to worker metrics", stranger, at("worker", "metrics"), false},
			{"another namespace to worker reduce service", stranger, at("worker", "reduce"), false},
			{"coordinator to worker reduce service", at("coordinator", ""), at("worker", "reduce"), false},
			{"coordinator to the world", at("coordinator", ""), stranger, false},
			{"worker to the world", at("worker", ""), stranger, false},
		} {
			if got := allowed(s, c.from, c.to); got != c.want {
				t.Errorf("%s: %s: allowed %v, want %v", dir, c.what, got, c.want)
			}
		}
	}
}
