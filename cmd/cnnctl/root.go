package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/cmd/internal/envflag"
)

// run executes cnnctl with args, writing results to stdout and diagnostics to
// stderr. Tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root, profile := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return errors.Join(err, profile.stop())
}

// cpuProfile is --cpuprofile's file, written while the command runs, for
// `go tool pprof` (what a benchmark's time goes to, in the process that
// spends it).
type cpuProfile struct {
	path string
	file *os.File
}

func (p *cpuProfile) start() error {
	if p.path == "" {
		return nil
	}
	f, err := os.Create(p.path)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	p.file = f
	return nil
}

func (p *cpuProfile) stop() error {
	if p.file == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := p.file.Close()
	p.file = nil
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	return nil
}

// env is what every subcommand writes to.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

func newRootCmd(stdout, stderr io.Writer) (*cobra.Command, *cpuProfile) {
	e := &env{stdout: stdout, stderr: stderr}
	var verbose bool
	profile := &cpuProfile{}
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
			if err := envflag.Apply(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			return profile.start()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log debug detail to stderr")
	root.PersistentFlags().StringVar(&profile.path, "cpuprofile", "", "write a CPU profile of the whole command to this file (for go tool pprof)")
	root.AddCommand(newTrainCmd(e), newEvalCmd(e), newExportCmd(e), newPredictCmd(e), newVizCmd(e))
	root.AddCommand(newSubmitCmd(e), newStatusCmd(e), newListCmd(e), newWatchCmd(e), newCancelCmd(e),
		newLogsCmd(e), newDownloadCmd(e), newWorkersCmd(e), newLeaderCmd(e), newEtcdCmd(e), newBenchCmd(e))
	root.AddCommand(newCertsCmd(e))
	return root, profile
}
