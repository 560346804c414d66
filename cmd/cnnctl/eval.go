package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/worker"
)

func newEvalCmd(e *env) *cobra.Command {
	var dataDir, backend, output string
	var threads, limit, batch int
	cmd := &cobra.Command{
		Use:   "eval CHECKPOINT",
		Short: "Evaluate a checkpoint's test accuracy on the MNIST test set",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			if batch < 1 {
				return fmt.Errorf("--batch %d: want at least 1", batch)
			}
			if limit < 0 {
				return fmt.Errorf("--test-limit %d: must not be negative", limit)
			}
			dir, err := dataset.Locate(dataDir)
			if err != nil {
				return err
			}
			train, test, err := dataset.LoadMNIST(dir)
			if err != nil {
				return err
			}
			cn, err := openCheckpointNet(args[0], job.DataOf(train, test), "evaluated on MNIST", backend, threads, batch)
			if err != nil {
				return err
			}
			defer cn.Close()
			c, net := cn.ckpt, cn.net
			n := test.Len()
			if limit > 0 {
				n = min(n, limit)
			}
			in := c.Spec.Input
			correct, err := worker.Evaluate(worker.NetworkPredictor{Net: net}, test, 0, n,
				make([]float32, batch*in.Height*in.Width*in.Channels), make([]int32, batch), make([]int64, batch), make([]int32, batch))
			if err != nil {
				return err
			}
			res := evalResult{Checkpoint: args[0], Step: c.Step, Epoch: c.Epoch, ParamsSHA256: c.ParamsSHA256(),
				Correct: correct, Samples: n, TestAccuracy: float64(correct) / float64(n)}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(e.stdout, "%s: step %d, epoch %d: test accuracy %.4f (%d/%d)\n",
				res.Checkpoint, res.Step, res.Epoch, res.TestAccuracy, res.Correct, res.Samples)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "folder with the MNIST IDX files (default: $DPCNN_MNIST_DIR, else the GoMNIST Go module)")
	cmd.Flags().StringVar(&backend, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	cmd.Flags().IntVar(&threads, "threads", 0, "CPU threads (0: all cores)")
	cmd.Flags().IntVar(&limit, "test-limit", 0, "evaluate the first N test images only (0: all)")
	cmd.Flags().IntVar(&batch, "batch", 500, "evaluation batch size")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// evalResult is what cnnctl eval prints with --output json.
type evalResult struct {
	Checkpoint   string  `json:"checkpoint"`
	Step         int64   `json:"step"`
	Epoch        int64   `json:"epoch"`
	ParamsSHA256 string  `json:"paramsSha256"`
	Correct      int     `json:"correct"`
	Samples      int     `json:"samples"`
	TestAccuracy float64 `json:"testAccuracy"`
}
