package main

import (
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/viz"
)

func newVizCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "viz",
		Short: "Draw pictures of training as PNG: curves, filters, feature maps, errors, confusion",
		Long: `Draw pictures of a training run as PNG files:

  curves     loss and accuracy against step and wall time, from a job or a run's history.jsonl
  filters    the first convolution's filters before and after training (the book's figure 7-9)
  features   every layer's feature maps for one test image (§7.6.2)
  errors     the misclassified test images, captioned true->predicted (figure 8-3)
  confusion  the confusion matrix of the test set

All but curves need only a checkpoint (cnnctl train's, or cnnctl download's).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("say what to draw: cnnctl viz curves|filters|features|errors|confusion (see cnnctl viz --help)")
		},
	}
	cmd.AddCommand(newVizCurvesCmd(e), newVizFiltersCmd(e), newVizFeaturesCmd(e), newVizErrorsCmd(e), newVizConfusionCmd(e))
	return cmd
}

// writePNGFile writes img to path as PNG and says so.
func writePNGFile(e *env, path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := viz.WritePNG(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, path)
	return nil
}

func newVizFiltersCmd(e *env) *cobra.Command {
	var out string
	var scale int
	cmd := &cobra.Command{
		Use:   "filters CHECKPOINT",
		Short: "The first convolution's filters before and after training",
		Long: `Draw the first convolution's filters as a grid, each normalised to 0-255 on
its own: above, the initial weights (the checkpoint's spec and seed give them
again, bit for bit); below, the checkpoint's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if scale < 1 {
				return fmt.Errorf("--scale %d: want at least 1", scale)
			}
			c, err := coordinator.ReadCheckpointFile(args[0])
			if err != nil {
				return err
			}
			net, err := model.New[float32](c.Spec, kernels.NewReference[float32](), 1)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			defer net.Close()
			net.InitParams(c.Seed)
			var grids []viz.Grid
			for _, v := range []struct {
				title  string
				params []model.Tensor
			}{
				{fmt.Sprintf("%s: initial filters (seed %d)", filepath.Base(args[0]), c.Seed), net.ExportParams()},
				{fmt.Sprintf("after %d steps", c.Step), c.Params},
			} {
				w, size, in, n, err := viz.FirstConv(c.Spec, v.params)
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				tiles, err := viz.FilterTiles(w, size, in, n)
				if err != nil {
					return err
				}
				grids = append(grids, viz.FilterGrid(v.title, tiles, in, scale))
			}
			return writePNGFile(e, out, viz.Stack(grids...))
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "filters.png", "PNG file to write")
	cmd.Flags().IntVar(&scale, "scale", 8, "screen pixels per weight")
	return cmd
}

// vizData is a checkpoint's network and the MNIST test set it is drawn
// against.
type vizData struct {
	*checkpointNet
	test *dataset.Set
}

func loadVizData(path, dataDir, backend string, threads, batch int) (*vizData, error) {
	dir, err := dataset.Locate(dataDir)
	if err != nil {
		return nil, err
	}
	train, test, err := dataset.LoadMNIST(dir)
	if err != nil {
		return nil, err
	}
	cn, err := openCheckpointNet(path, job.DataOf(train, test), "drawn against MNIST", backend, threads, batch)
	if err != nil {
		return nil, err
	}
	return &vizData{checkpointNet: cn, test: test}, nil
}

// predictTest classifies the first n test images and calls seen for each.
func (d *vizData) predictTest(n int, seen func(i, label, predicted int)) error {
	batch := d.net.MaxBatch()
	size := d.test.Size()
	x := make([]float32, batch*size)
	pred := make([]int32, batch)
	for lo := 0; lo < n; lo += batch {
		m := min(batch, n-lo)
		dataset.ToFloat(x[:m*size], d.test.Pixels[lo*size:(lo+m)*size])
		if err := d.net.Predict(x, m, pred); err != nil {
			return err
		}
		for k := range m {
			seen(lo+k, int(d.test.Labels[lo+k]), int(pred[k]))
		}
	}
	return nil
}

// vizFlags are the flags of the pictures drawn against the test set.
type vizFlags struct {
	out, dataDir, backend string
	threads, limit, scale int
}

func (f *vizFlags) register(cmd *cobra.Command, out string) {
	fs := cmd.Flags()
	fs.StringVarP(&f.out, "out", "o", out, "PNG file to write")
	fs.StringVar(&f.dataDir, "data", "", "folder with the MNIST IDX files (default: $DPCNN_MNIST_DIR, else the GoMNIST Go module)")
	fs.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	fs.IntVar(&f.threads, "threads", 0, "CPU threads (0: all cores)")
	fs.IntVar(&f.limit, "test-limit", 0, "use the first N test images only (0: all)")
	fs.IntVar(&f.scale, "scale", 2, "screen pixels per image pixel")
}

func (f *vizFlags) check(n int) (int, error) {
	if f.limit < 0 {
		return 0, fmt.Errorf("--test-limit %d: must not be negative", f.limit)
	}
	if f.scale < 1 {
		return 0, fmt.Errorf("--scale %d: want at least 1", f.scale)
	}
	if f.limit > 0 {
		n = min(n, f.limit)
	}
	return n, nil
}

func newVizErrorsCmd(e *env) *cobra.Command {
	var f vizFlags
	var most int
	cmd := &cobra.Command{
		Use:   "errors CHECKPOINT",
		Short: "The misclassified test images, captioned true->predicted",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if most < 1 {
				return fmt.Errorf("--max %d: want at least 1", most)
			}
			d, err := loadVizData(args[0], f.dataDir, f.backend, f.threads, 500)
			if err != nil {
				return err
			}
			defer d.Close()
			n, err := f.check(d.test.Len())
			if err != nil {
				return err
			}
			var ms []viz.Misclassified
			wrong := 0
			err = d.predictTest(n, func(i, label, predicted int) {
				if label == predicted {
					return
				}
				wrong++
				if len(ms) < most {
					ms = append(ms, viz.Misclassified{Index: i, Pix: d.test.Image(i), Label: label, Predicted: predicted})
				}
			})
			if err != nil {
				return err
			}
			title := fmt.Sprintf("%d of %d test images misclassified (true->predicted)", wrong, n)
			if wrong > len(ms) {
				title = fmt.Sprintf("the first %d of %d misclassified test images of %d (true->predicted)", len(ms), wrong, n)
			}
			if wrong == 0 {
				title = fmt.Sprintf("none of %d test images misclassified", n)
			}
			g, err := viz.MisclassifiedGrid(title, ms, d.test.Cols, d.test.Rows, 10, f.scale)
			if err != nil {
				return err
			}
			return writePNGFile(e, f.out, g.Image())
		},
	}
	f.register(cmd, "errors.png")
	cmd.Flags().IntVar(&most, "max", 50, "draw at most this many images (the first ones)")
	return cmd
}

func newVizConfusionCmd(e *env) *cobra.Command {
	var f vizFlags
	cmd := &cobra.Command{
		Use:   "confusion CHECKPOINT",
		Short: "The confusion matrix of the test set: rows true labels, columns predictions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := loadVizData(args[0], f.dataDir, f.backend, f.threads, 500)
			if err != nil {
				return err
			}
			defer d.Close()
			n, err := f.check(d.test.Len())
			if err != nil {
				return err
			}
			m := viz.NewConfusion(d.test.Classes)
			if err := d.predictTest(n, func(_, label, predicted int) { m.Add(label, predicted) }); err != nil {
				return err
			}
			return writePNGFile(e, f.out, viz.ConfusionImage(m))
		},
	}
	f.register(cmd, "confusion.png")
	cmd.Flags().Lookup("scale").Hidden = true // the matrix has no images
	return cmd
}

func newVizFeaturesCmd(e *env) *cobra.Command {
	var f vizFlags
	var index int
	cmd := &cobra.Command{
		Use:   "features CHECKPOINT",
		Short: "Every layer's feature maps for one test image, a PNG per layer",
		Long: `Run test image --image through the network (dropout off) and draw the
input and every layer's output into the folder --out: 00-input.png, then
01-conv1.png, 02-relu1.png, ... Each channel is a tile normalised to 0-255 on
its own; an affine layer's units are one row. A convolution followed by a ReLU
is computed in one kernel, so its maps are already rectified.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := loadVizData(args[0], f.dataDir, "reference", 1, 1)
			if err != nil {
				return err
			}
			defer d.Close()
			if _, err := f.check(0); err != nil {
				return err
			}
			if index < 0 || index >= d.test.Len() {
				return fmt.Errorf("--image %d: the test set has images 0 to %d", index, d.test.Len()-1)
			}
			if err := os.MkdirAll(f.out, 0o755); err != nil {
				return err
			}
			pix := d.test.Image(index)
			x := make([]float32, len(pix))
			dataset.ToFloat(x, pix)
			acts, err := d.net.Activations(x, 1)
			if err != nil {
				return err
			}
			input := viz.Grid{Title: fmt.Sprintf("test image %d, label %d", index, d.test.Labels[index]),
				Tiles: []viz.Tile{{Width: d.test.Cols, Height: d.test.Rows, Pix: pix}}, Columns: 1, Scale: 4 * f.scale, Gap: 4}
			if err := writePNGFile(e, filepath.Join(f.out, "00-input.png"), input.Image()); err != nil {
				return err
			}
			for i, a := range acts {
				g, err := viz.FeatureGrid(a, 0, f.scale)
				if err != nil {
					return err
				}
				if err := writePNGFile(e, filepath.Join(f.out, fmt.Sprintf("%02d-%s.png", i+1, a.Name)), g.Image()); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f.register(cmd, "features")
	fs := cmd.Flags()
	fs.Lookup("out").Usage = "folder to write the PNG files into"
	fs.IntVar(&index, "image", 0, "index of the test image")
	for _, name := range []string{"test-limit", "backend", "threads"} {
		fs.Lookup(name).Hidden = true // one image, on the reference backend
	}
	return cmd
}
