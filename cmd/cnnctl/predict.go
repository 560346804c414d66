package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/digitimage"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/model"
)

// predictBatch is how many pictures go through the network at once: the
// network's buffers are sized for it, and the files of any count pass in
// batches of it.
const predictBatch = 256

func newPredictCmd(e *env) *cobra.Command {
	var modelPath, backend, output string
	var threads, top int
	cmd := &cobra.Command{
		Use:   "predict --model CHECKPOINT FILE...",
		Short: "Classify pictures of handwritten digits (PNG or JPEG) with a trained checkpoint",
		Long: `Classify pictures of handwritten digits with a trained checkpoint, printing
each file's label and its most probable classes.

A picture may be a PNG or a JPEG of any size, dark ink on light paper or light
on dark. It is made an MNIST digit as MNIST's were made: grey (luminance),
inverted when its border is light, the bounding box of the ink scaled to 20
pixels on its longer side, and the result placed in 28x28 with its centre of
mass at (14, 14). The probabilities are the network's softmax.

Every file is read before any is classified: a file that cannot be read, or
holds no ink, stops the command with an error naming it.`,
		Example: `  cnnctl predict --model runs/simple-seed1/checkpoint.ckpt seven.png photo.jpg
  cnnctl predict -m checkpoint.ckpt --top 5 -o json digits/*.png`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			if modelPath == "" {
				return errors.New("--model: give the checkpoint to classify with (cnnctl train writes checkpoint.ckpt in its --out folder)")
			}
			if top < 1 {
				return fmt.Errorf("--top %d: want at least 1", top)
			}
			if threads < 0 {
				return fmt.Errorf("--threads %d: must not be negative", threads)
			}
			// The pictures are made MNIST digits: the network must take
			// MNIST's 28×28×1 and tell its 10 classes apart.
			cn, err := openCheckpointNet(modelPath, job.MNIST, "used on MNIST digits (28×28×1, 10 classes)", backend, threads, min(len(files), predictBatch))
			if err != nil {
				return err
			}
			defer cn.Close()
			digits, err := readDigits(files)
			if err != nil {
				return err
			}
			net := cn.net
			probs, err := classify(net, digits)
			if err != nil {
				return err
			}
			results := make([]prediction, len(files))
			for i, p := range probs {
				results[i] = newPrediction(files[i], digits[i], p, top)
			}
			if output == "json" {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			return printPredictions(e.stdout, results)
		},
	}
	cmd.Flags().StringVarP(&modelPath, "model", "m", "", "checkpoint to classify with (required; cnnctl train writes checkpoint.ckpt)")
	cmd.Flags().IntVar(&top, "top", 3, "how many of the most probable classes to print for each file (at most the network's classes)")
	cmd.Flags().StringVar(&backend, "backend", "cpu", "compute backend: cpu, cuda, auto (CUDA where a device works, else the CPU) or reference")
	cmd.Flags().IntVar(&threads, "threads", 0, "CPU threads (0: all cores)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// readDigits reads and normalises every file, and reports every one that
// fails (each error names its file), so that one run shows all that is
// wrong.
func readDigits(files []string) ([]digitimage.Digit, error) {
	digits := make([]digitimage.Digit, len(files))
	var errs []error
	for i, f := range files {
		d, err := digitimage.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		digits[i] = d
	}
	return digits, errors.Join(errs...)
}

// classify runs the digits through net in test mode, in batches of up to
// its MaxBatch, and returns each one's class probabilities.
func classify(net *model.Network[float32], digits []digitimage.Digit) ([][]float64, error) {
	size, classes := net.InputSize(), net.Classes()
	x := make([]float32, net.MaxBatch()*size)
	probs := make([][]float64, 0, len(digits))
	for lo := 0; lo < len(digits); lo += net.MaxBatch() {
		n := min(net.MaxBatch(), len(digits)-lo)
		for i, d := range digits[lo : lo+n] {
			// The scale of the training data (x/255), by its own code.
			dataset.ToFloat(x[i*size:(i+1)*size], d.Pixels)
		}
		logits, err := net.Forward(x[:n*size], n, nil, model.RunContext{})
		if err != nil {
			return nil, err
		}
		for i := range n {
			probs = append(probs, softmax(logits[i*classes:(i+1)*classes]))
		}
	}
	return probs, nil
}

// softmax turns one sample's logits (Forward stops before the network's
// softmax layer) into probabilities, in float64 and shifted by the largest
// logit so that no exponential overflows.
func softmax(logits []float32) []float64 {
	top := float64(slices.Max(logits))
	p := make([]float64, len(logits))
	sum := 0.0
	for i, l := range logits {
		p[i] = math.Exp(float64(l) - top)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// prediction is one file's line of cnnctl predict, and its object in the
// JSON array --output json prints.
type prediction struct {
	File string `json:"file"`
	// Label is the most probable class.
	Label int `json:"label"`
	// Top are the most probable classes, most probable first.
	Top []classProbability `json:"top"`
	// Background is what the picture's border showed: dark (used as is),
	// light (inverted) or transparent (the ink is the opacity).
	Background digitimage.Background `json:"background"`
}

type classProbability struct {
	Label       int     `json:"label"`
	Probability float64 `json:"probability"`
}

// newPrediction keeps the top most probable classes of probs (ties in
// class order).
func newPrediction(file string, d digitimage.Digit, probs []float64, top int) prediction {
	classes := make([]classProbability, len(probs))
	for c, p := range probs {
		classes[c] = classProbability{Label: c, Probability: p}
	}
	slices.SortStableFunc(classes, func(a, b classProbability) int { return cmp.Compare(b.Probability, a.Probability) })
	classes = classes[:min(top, len(classes))]
	return prediction{File: file, Label: classes[0].Label, Top: classes, Background: d.Background}
}

// printPredictions writes one line per file: its label, then the top
// classes with their probabilities.
func printPredictions(w io.Writer, results []prediction) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tLABEL\tPROBABILITIES")
	for _, r := range results {
		top := make([]string, len(r.Top))
		for i, c := range r.Top {
			top[i] = fmt.Sprintf("%d %.3f", c.Label, c.Probability)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", r.File, r.Label, strings.Join(top, ", "))
	}
	return tw.Flush()
}
