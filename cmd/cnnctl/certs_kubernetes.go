package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"sigs.k8s.io/yaml"

	"github.com/dpcnn/dpcnn/secure"
)

// FileSecrets is the manifest `cnnctl certs --kubernetes` writes beside the
// files: the Secrets deploy/k8s mounts, for `kubectl apply -f`.
const FileSecrets = "secrets.yaml"

// namespaceName is what Kubernetes takes as a namespace's name (an RFC 1123
// label), which the certificates' names are made of.
var namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// kubernetesSecrets says which files go into which Secret of deploy/k8s:
// each holds what its pods need and no more (workers get neither the
// coordinators' key nor the token, cnnctl's Jobs only the CA and the
// token), and ca.key goes in none.
var kubernetesSecrets = []struct {
	name  string
	files []string
}{
	{"dpcnn-etcd-tls", []string{secure.FileCA, secure.FileEtcdCert, secure.FileEtcdKey}},
	{"dpcnn-coordinator-tls", []string{secure.FileCA, secure.FileCoordinatorCert, secure.FileCoordinatorKey, secure.FileToken}},
	{"dpcnn-worker-tls", []string{secure.FileCA, secure.FileWorkerCert, secure.FileWorkerKey}},
	{"dpcnn-client", []string{secure.FileCA, secure.FileToken}},
}

// kubernetesHosts are the names coordinators and etcd are dialed at inside
// a cluster made from deploy/k8s in namespace ns, with etcdMembers
// members: the Services' names, short and qualified, and each etcd
// member's own (etcd checks a peer's certificate for the peer's name, and
// takes no wildcard).
func kubernetesHosts(ns string, etcdMembers int) []string {
	qualified := func(name string) []string {
		return []string{name, name + "." + ns, name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"}
	}
	hosts := append(qualified("coordinator"), qualified("etcd-client")...)
	for i := range etcdMembers {
		hosts = append(hosts, qualified(fmt.Sprintf("etcd-%d.etcd", i))...)
	}
	return hosts
}

// secretManifest is a v1 Secret, written without the Kubernetes API types
// so that cnnctl does not carry them (the tests decode it strictly into
// them).
type secretManifest struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   secretMetadata    `json:"metadata"`
	Type       string            `json:"type"`
	Data       map[string][]byte `json:"data"`
}

type secretMetadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

// writeKubernetesSecrets reads the set's files from dir (so that a set made
// earlier, kept by --if-absent, is the one the Secrets carry) and writes
// them as the Secrets of namespace ns into dir/secrets.yaml, mode 0600.
func writeKubernetesSecrets(dir, ns string) (string, error) {
	var out []byte
	for _, s := range kubernetesSecrets {
		m := secretManifest{
			APIVersion: "v1", Kind: "Secret", Type: "Opaque",
			Metadata: secretMetadata{Name: s.name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/part-of": "dpcnn"}},
			Data:     map[string][]byte{},
		}
		for _, f := range s.files {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				return "", fmt.Errorf("secret %s: %w", s.name, err)
			}
			m.Data[f] = b
		}
		b, err := yaml.Marshal(m)
		if err != nil {
			return "", err
		}
		out = append(append(out, "---\n"...), b...)
	}
	path := filepath.Join(dir, FileSecrets)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
