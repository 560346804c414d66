package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

func newWorkersCmd(e *env) *cobra.Command {
	var cf clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List the workers the leading coordinator knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return getAndShow(cmd.Context(), e, &cf, output, "list workers",
				func(ctx context.Context, c *client) (*dpcnnv1.ListWorkersResponse, error) {
					return c.cluster().ListWorkers(ctx, &dpcnnv1.ListWorkersRequest{})
				},
				func(w io.Writer, r *dpcnnv1.ListWorkersResponse) { printWorkerTable(w, r.Workers, time.Now()) })
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// printWorkerTable writes one line per worker.
func printWorkerTable(w io.Writer, workers []*dpcnnv1.WorkerInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tSTATE\tBACKEND\tCORES\tIMG/S\tJOB\tREDUCING\tLAST SEEN\tADDRESS\tVERSION")
	for _, wk := range workers {
		state := strings.ToLower(strings.TrimPrefix(wk.State.String(), "WORKER_STATE_"))
		// The groups of the step's tree of reducers it adds; "-" for a
		// worker that serves no reduce service.
		reducing := "-"
		if wk.Reduces {
			reducing = fmt.Sprint(wk.ReducerGroups)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\n", wk.Id, state, orDash(wk.Backend), wk.Cores, wk.ImagesPerSec,
			orDash(wk.JobId), reducing, ago(wk.LastSeenUnixNanos, now), orDash(wk.Address), orDash(wk.Version))
	}
	tw.Flush()
	if len(workers) == 0 {
		fmt.Fprintln(w, "(no workers)")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
