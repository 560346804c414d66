package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/cluster"
)

// newEtcdCmd runs a single-member etcd in this process: enough for a local
// cluster of separate coordinator and worker processes, and for tests. A
// real deployment runs a real etcd cluster.
func newEtcdCmd(e *env) *cobra.Command {
	var dataDir, endpointsFile string
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Run a single-member etcd on 127.0.0.1 for a local cluster",
		Long: `Run a single-member etcd on 127.0.0.1 at a free port, keeping its data in
--data-dir, until interrupted. It prints its client endpoint, and writes it to
--endpoints-file if given, for DPCNN_ETCD_ENDPOINTS of the coordinators and
workers. For local clusters and tests; production runs a real etcd cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return fmt.Errorf("--data-dir is required")
			}
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return err
			}
			endpoints, stop, err := cluster.StartEmbeddedEtcd(cmd.Context(), dataDir)
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
	return cmd
}
