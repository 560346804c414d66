package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

func newSubmitCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "submit",
		Short: "Submit work to a coordinator",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("say what to submit: cnnctl submit job [flags]")
		},
	}
	cmd.AddCommand(newSubmitJobCmd(e))
	return cmd
}

func newSubmitJobCmd(e *env) *cobra.Command {
	var cf clientFlags
	var jf jobFlags
	var id, backend string
	var wait, quiet bool
	var spec job.Spec
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit a training job, from flags or a job file",
		Long: `Submit a training job to the coordinator and print its id.

The job is read from flags, or from a YAML or JSON file (-f) with the flags given
explicitly applied over it, and validated here before it is sent. With --wait the
command follows the job like 'cnnctl watch' and fails if the job does.`,
		Args: cobra.NoArgs,
		// The spec is built and checked before anything is dialed, in
		// PreRunE, so that a test can check a command line (the Kubernetes
		// Jobs' in deploy/k8s) without a coordinator.
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			if spec, err = jf.build(cmd.Flags()); err != nil {
				return err
			}
			if backend != "" && backend != "cpu" && backend != "cuda" {
				return fmt.Errorf("--backend %q: want cpu or cuda (or empty to let the coordinator choose)", backend)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			req := &dpcnnv1.SubmitJobRequest{Spec: spec.JSON(), JobId: id, Backend: backend}
			var j *dpcnnv1.Job
			err = c.unary(cmd.Context(), "submit job", func(ctx context.Context) (err error) {
				j, err = c.jobs().SubmitJob(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "job %s submitted (%s)\n", j.Id, j.State.Word())
			if !wait {
				return nil
			}
			res, err := c.watch(cmd.Context(), j.Id, newWatchView(e.stdout, quiet))
			if err != nil {
				return err
			}
			return res.err()
		},
	}
	cf.register(cmd.Flags())
	jf.register(cmd.Flags())
	cmd.Flags().StringVar(&jf.spec.Name, "name", "", "the job's name, for display")
	cmd.Flags().StringVar(&id, "id", "", "job id, making a retried submission safe (default: the coordinator picks one)")
	cmd.Flags().StringVar(&backend, "backend", "", "run only on workers of this kind: cpu or cuda (default: the coordinator chooses)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the job until it ends, like 'cnnctl watch'")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "with --wait: print evaluations, state changes and errors only")
	return cmd
}
