package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/secure"
)

// newEtcdCmd runs a single-member etcd in this process: enough for a local
// cluster of separate coordinator and worker processes, and for tests. A
// real deployment runs a real etcd cluster.
func newEtcdCmd(e *env) *cobra.Command {
	var dataDir, endpointsFile string
	var files cluster.TLSFiles
	var insecure bool
	var listenHost string
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Run a single-member etcd for a local or test cluster",
		Long: `Run a single-member etcd on 127.0.0.1 at a free port, keeping its data in
--data-dir, until interrupted. It prints its client endpoint, and writes it to
--endpoints-file if given, for DPCNN_ETCD_ENDPOINTS of the coordinators and
workers. For local clusters and tests; production runs a real etcd cluster.

With --tls-ca, --tls-cert and --tls-key (etcd.crt and etcd.key from
` + "`cnnctl certs`" + `) it serves https:// and requires client certificates signed
by the CA from clients and peers; --insecure serves plaintext instead. Clients
are served on 127.0.0.1 unless --listen-host names another address of this
machine (with TLS only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return fmt.Errorf("--data-dir is required")
			}
			var opts []cluster.EmbeddedOption
			if listenHost != "" {
				opts = append(opts, cluster.WithClientHost(listenHost))
			}
			switch {
			case files != cluster.TLSFiles{}:
				if files.CA == "" || files.Cert == "" || files.Key == "" {
					return fmt.Errorf("etcd TLS needs --tls-ca, --tls-cert and --tls-key together")
				}
				// Read them now, for a clear error before etcd starts.
				if _, err := secure.ServerTLS(secure.Files{CA: files.CA, Cert: files.Cert, Key: files.Key}, true); err != nil {
					return err
				}
				opts = append(opts, cluster.WithServerTLS(files))
			case !insecure:
				return secure.ErrNoTransportSecurity
			}
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return err
			}
			endpoints, stop, err := cluster.StartEmbeddedEtcd(cmd.Context(), dataDir, opts...)
			if err != nil {
				return err
			}
			defer stop()
			list := strings.Join(endpoints, ",")
			if endpointsFile != "" {
				// Written whole and renamed, so a reader never sees half of it.
				tmp := endpointsFile + ".tmp"
				if err := os.WriteFile(tmp, []byte(list+"\n"), 0o644); err != nil {
					return err
				}
				if err := os.Rename(tmp, endpointsFile); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "etcd serving at %s (data in %s)\n", list, filepath.Clean(dataDir))
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "folder for etcd's data")
	cmd.Flags().StringVar(&endpointsFile, "endpoints-file", "", "also write the client endpoint to this file")
	cmd.Flags().StringVar(&files.CA, "tls-ca", "", "CA that client and peer certificates must chain to")
	cmd.Flags().StringVar(&files.Cert, "tls-cert", "", "etcd's certificate (server and client usages: it also serves peers)")
	cmd.Flags().StringVar(&files.Key, "tls-key", "", "the key of --tls-cert")
	cmd.Flags().StringVar(&listenHost, "listen-host", "", "IP address to serve clients on, at a free port (default 127.0.0.1; any other needs TLS)")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "serve plaintext (on 127.0.0.1 only) when no TLS files are given")
	return cmd
}
