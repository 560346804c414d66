package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/secure"
)

// newCertsCmd writes a development CA, the certificates of a cluster and a
// token.
func newCertsCmd(e *env) *cobra.Command {
	var out, hosts, kubernetes string
	var etcdMembers int
	var validFor time.Duration
	var force, ifAbsent, noCAKey bool
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a development CA, the cluster's certificates and a token",
		Long: `Make a development certificate authority and, signed by it, the certificates
a cluster needs for mutual TLS, and a random bearer token for cnnctl, in
--out (ECDSA P-256; keys and the token with mode 0600):

  ca.crt, ca.key            the CA (keep ca.key off the cluster's machines)
  coordinator.crt/.key      coordinators: gRPC server, and etcd client
  etcd.crt/.key             etcd: client and peer server
  worker.crt/.key           workers: client of coordinators and etcd
  cnnctl.crt/.key           cnnctl: client (optional when it sends the token)
  token                     the bearer token cnnctl's calls carry

--hosts lists the names and IP addresses that coordinators and etcd are
reached at; localhost, 127.0.0.1 and ::1 are always included. For a
production cluster, use your organisation's CA instead.

--kubernetes NAMESPACE is for deploy/k8s: it adds the names the
coordinators and etcd members have in that namespace (the Services', and
etcd-0.etcd up to --etcd-members) and writes the Secrets the manifests
mount into --out/secrets.yaml, for kubectl apply -f (ca.key goes in none).`,
		Example: `  cnnctl certs --out certs --hosts etcd,coordinator-1,coordinator-2
  cnnctl certs --out certs --kubernetes dpcnn && kubectl apply -f certs/secrets.yaml
  coordinator --tls-ca certs/ca.crt --tls-cert certs/coordinator.crt --tls-key certs/coordinator.key --token-file certs/token ...
  worker --tls-ca certs/ca.crt --tls-cert certs/worker.crt --tls-key certs/worker.key ...
  cnnctl list --tls-ca certs/ca.crt --token-file certs/token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			writeSecrets := func() error {
				if kubernetes == "" {
					return nil
				}
				path, err := writeKubernetesSecrets(out, kubernetes)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, path)
				return nil
			}
			if out == "" {
				return fmt.Errorf("--out is required: the folder to write the files to")
			}
			if validFor < time.Hour {
				return fmt.Errorf("--valid-for %s: want at least 1h", validFor)
			}
			var list []string
			for _, h := range strings.Split(hosts, ",") {
				if h = strings.TrimSpace(h); h != "" {
					list = append(list, h)
				}
			}
			if kubernetes != "" {
				if !namespaceName.MatchString(kubernetes) {
					return fmt.Errorf("--kubernetes %q: not a namespace name (lower-case letters, digits and '-', at most 63)", kubernetes)
				}
				if etcdMembers < 1 {
					return fmt.Errorf("--etcd-members %d: want at least 1", etcdMembers)
				}
				list = append(list, kubernetesHosts(kubernetes, etcdMembers)...)
			}
			if err := secure.CheckHosts(list); err != nil {
				return fmt.Errorf("--hosts: %w", err)
			}
			if force && ifAbsent {
				return fmt.Errorf("--force and --if-absent: choose one")
			}
			set, err := secure.NewDevelopmentSet(list, validFor)
			if err != nil {
				return err
			}
			if noCAKey {
				delete(set.Files, secure.FileCAKey)
			}
			if ifAbsent {
				present := 0
				for _, name := range set.Names() {
					if _, err := os.Stat(filepath.Join(out, name)); err == nil {
						present++
					}
				}
				switch present {
				case len(set.Files):
					fmt.Fprintf(e.stdout, "%s already holds a set: nothing written\n", out)
					return writeSecrets()
				case 0:
				default:
					return fmt.Errorf("%s holds %d of the %d files of a set: remove them, or --force", out, present, len(set.Files))
				}
			}
			if err := set.Write(out, force); err != nil {
				if !force {
					return fmt.Errorf("%w; --force overwrites", err)
				}
				return err
			}
			for _, name := range set.Names() {
				fmt.Fprintln(e.stdout, filepath.Join(out, name))
			}
			return writeSecrets()
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "folder to write the files to (made if missing)")
	cmd.Flags().StringVar(&hosts, "hosts", "", "comma-separated names and IPs of the coordinators and etcd members")
	cmd.Flags().DurationVar(&validFor, "valid-for", 365*24*time.Hour, "lifetime of the CA and the certificates")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite files that exist")
	cmd.Flags().BoolVar(&ifAbsent, "if-absent", false, "do nothing when --out already holds a whole set (for init containers run at every start)")
	cmd.Flags().StringVar(&kubernetes, "kubernetes", "", "namespace of a deploy/k8s cluster: add its names to --hosts and write its Secrets to --out/secrets.yaml")
	cmd.Flags().IntVar(&etcdMembers, "etcd-members", 3, "with --kubernetes: how many etcd members (etcd-0.etcd, ...) the certificates name")
	cmd.Flags().BoolVar(&noCAKey, "no-ca-key", false, "do not write ca.key: nothing more can be signed by this CA (for a folder every process mounts)")
	return cmd
}
