package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// newLeaderCmd names the leading coordinator: its id (in Kubernetes, its pod's
// name, so `kubectl port-forward pod/<id>` reaches it), address and term.
func newLeaderCmd(e *env) *cobra.Command {
	var cf clientFlags
	var output string
	var idOnly bool
	cmd := &cobra.Command{
		Use:   "leader",
		Short: "Name the leading coordinator: its id, address and term",
		Long: `Ask a coordinator which coordinator leads, and print the leader's id, address
and term. In Kubernetes the id is the leader's pod name (DPCNN_ID), so that

  kubectl -n dpcnn port-forward pod/$(kubectl -n dpcnn exec deploy/coordinator -- cnnctl leader --id-only) 7070

reaches the leader from your own machine. While no coordinator leads, it waits
for up to --leader-wait.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if idOnly && output == "json" {
				output = "text" // --id-only wins
			}
			return getAndShow(cmd.Context(), e, &cf, output, "leader",
				func(ctx context.Context, c *client) (*dpcnnv1.LeaderResponse, error) {
					return c.cluster().Leader(ctx, &dpcnnv1.LeaderRequest{})
				},
				func(w io.Writer, r *dpcnnv1.LeaderResponse) {
					if idOnly {
						fmt.Fprintln(w, r.CoordinatorId)
						return
					}
					since := ""
					if r.SinceUnixNanos != 0 {
						since = ", since " + time.Unix(0, r.SinceUnixNanos).Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%s leads at %s (term %d%s)\n", orDash(r.CoordinatorId), r.Address, r.Term, since)
				})
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&idOnly, "id-only", false, "print the leader's id alone (its pod's name in Kubernetes)")
	return cmd
}
