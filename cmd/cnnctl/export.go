package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/model"
)

func newExportCmd(e *env) *cobra.Command {
	export := &cobra.Command{Use: "export", Short: "Export a trained model to other formats"}
	var out string
	onnx := &cobra.Command{
		Use:   "onnx CHECKPOINT",
		Short: "Write a checkpoint's network as an ONNX model (opset 13) for any ONNX runtime",
		Long: `Write a checkpoint's network as an ONNX model (opset 13).

The model takes "input", a float tensor [N, 1, 28, 28] (NCHW) of pixels scaled
to [0, 1], and gives "probabilities" [N, 10]. Dropout appears in its
inference-time form.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			c, err := coordinator.ReadCheckpointFile(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			defer func() {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}()
			w := bufio.NewWriter(f)
			if err := model.ExportONNX(w, c.Spec, c.ModelParams(), model.ONNXOptions{}); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s\n", out)
			return nil
		},
	}
	onnx.Flags().StringVarP(&out, "out", "o", "", "ONNX file to write")
	export.AddCommand(onnx)
	return export
}
