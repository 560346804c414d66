package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
)

// run executes cnnctl with args, writing results to stdout and diagnostics to
// stderr. Tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// env is what every subcommand writes to.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	e := &env{stdout: stdout, stderr: stderr}
	var verbose bool
	root := &cobra.Command{
		Use:           "cnnctl",
		Short:         "Train convolutional networks on MNIST, on one machine or many",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			e.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			// Flags the command line left unset take their environment
			// variables, as in the coordinator and worker commands.
			return envflag.Apply(cmd.Flags(), os.Getenv)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug detail to stderr")
	root.AddCommand(newTrainCmd(e), newEvalCmd(e), newExportCmd(e), newPredictCmd(e), newVizCmd(e))
	root.AddCommand(newSubmitCmd(e), newStatusCmd(e), newListCmd(e), newWatchCmd(e), newCancelCmd(e),
		newLogsCmd(e), newDownloadCmd(e), newWorkersCmd(e), newLeaderCmd(e), newEtcdCmd(e), newBenchCmd(e))
	root.AddCommand(newCertsCmd(e))
	return root
}
