// Package k8s holds dpcnn's Kubernetes manifests (a kustomize base, its
// components and overlays, and Jobs; see the kustomization.yaml files) and
// renders them for the tests: Render runs kustomize as `kubectl apply -k`
// does and decodes every object strictly into the k8s.io/api types, and
// the helpers resolve a container's environment and command line the way
// the kubelet would, so that the binaries' own tests can parse them with
// their own flag sets (cmd/coordinator, cmd/worker, cmd/cnnctl).
//
// Nothing here talks to a cluster: scripts/k8s-check.sh applies the same
// overlays to a real API server, scripts/k8s-node.sh runs them on a real
// kubelet.
package k8s
