package main

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
)

// predictImages is how many MNIST test images TestPredict writes as PNG
// files: enough that a 2-point gap in accuracy is 6 images.
const predictImages = 300

// TestPredict trains a small model once (simple on 10,000 images for one
// epoch: about 94% on the test set, a few seconds) and classifies pictures
// with it.
func TestPredict(t *testing.T) {
	dir := t.TempDir()
	if out, err := runCLI(t, "train", "--in-process", "--net", "simple", "--epochs", "1", "--batch", "50", "--lr", "0.003",
		"--train-limit", "10000", "--test-limit", "100", "--out", dir); err != nil {
		t.Fatalf("train: %v\n%s", err, out)
	}
	ckpt := filepath.Join(dir, "checkpoint.ckpt")
	mnistDir, err := dataset.Locate("")
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := dataset.LoadMNIST(mnistDir)
	if err != nil {
		t.Fatal(err)
	}
	files := make([]string, predictImages)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("test-%04d.png", i))
		writePicture(t, files[i], mnistPicture(test, i))
	}

	var results []prediction
	t.Run("MNISTAccuracy", func(t *testing.T) {
		out, err := runCLI(t, append([]string{"predict", "--model", ckpt, "--output", "json"}, files...)...)
		if err != nil {
			t.Fatalf("predict: %v\n%s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != len(files) {
			t.Fatalf("predict -o json: %d results (%v), want %d:\n%.2000s", len(results), err, len(files), out)
		}
		correct := 0
		for i, r := range results {
			checkPrediction(t, r, files[i], 3)
			if r.Label == int(test.Labels[i]) {
				correct++
			}
		}
		predictAcc := float64(correct) / float64(len(files))
		// The model's accuracy on the same images as the network's input
		// is made from the IDX bytes, by cnnctl eval.
		ev, err := runCLI(t, "eval", ckpt, "--test-limit", fmt.Sprint(predictImages), "-o", "json")
		if err != nil {
			t.Fatalf("eval: %v\n%s", err, ev)
		}
		var direct evalResult
		if err := json.Unmarshal([]byte(ev), &direct); err != nil {
			t.Fatalf("eval -o json: %v\n%s", err, ev)
		}
		t.Logf("predict on %d PNG files: accuracy %.4f; the network on the raw images: %.4f", len(files), predictAcc, direct.TestAccuracy)
		// Below 90% the comparison would say little about the pictures'
		// preparation: a model that guesses is as good on anything.
		if direct.TestAccuracy < 0.90 {
			t.Fatalf("the model's accuracy is %.4f, want at least 0.90 for the comparison to mean something", direct.TestAccuracy)
		}
		// The preparation re-centres and re-scales what is already an MNIST
		// digit: it zeroes its faintest pixels (under digitimage.NoiseFloor)
		// and stretches its strongest to 255, which can move the centre of
		// mass across a half pixel and the digit by one pixel (about 0.3% of
		// MNIST's digits). A digit the network is unsure of can change
		// class; 2 points (6 of 300) leaves room for that and none for a
		// wrong scale, polarity or placement, which costs tens of points.
		if math.Abs(predictAcc-direct.TestAccuracy) > 0.02 {
			t.Errorf("predict's accuracy on the PNG files %.4f, the model's on the same images %.4f: more than 2 points apart", predictAcc, direct.TestAccuracy)
		}
	})
	if len(results) != len(files) {
		t.FailNow()
	}

	t.Run("TextOutputAndAllClasses", func(t *testing.T) {
		out, err := runCLI(t, "predict", "-m", ckpt, files[0], files[1])
		if err != nil {
			t.Fatalf("predict: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		line := regexp.MustCompile(`^\S+\s+\d\s+\d 0\.\d{3}, \d 0\.\d{3}, \d 0\.\d{3}$`)
		if len(lines) != 3 || !regexp.MustCompile(`^FILE\s+LABEL\s+PROBABILITIES$`).MatchString(lines[0]) ||
			!line.MatchString(lines[1]) || !line.MatchString(lines[2]) ||
			!slices.Equal(strings.Fields(lines[1])[:3], []string{files[0], fmt.Sprint(results[0].Label), fmt.Sprint(results[0].Label)}) {
			t.Errorf("predict printed:\n%s\nwant a header and a line per file: name, label, three classes with probabilities", out)
		}
		// With every class, the probabilities are the softmax: they sum to 1.
		out, err = runCLI(t, "predict", "-m", ckpt, "--top", "20", "-o", "json", files[0])
		var all []prediction
		if err != nil || json.Unmarshal([]byte(out), &all) != nil || len(all) != 1 {
			t.Fatalf("predict --top 20: %v\n%s", err, out)
		}
		checkPrediction(t, all[0], files[0], 10)
		sum := 0.0
		for _, c := range all[0].Top {
			sum += c.Probability
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("the probabilities of all 10 classes sum to %v, want 1", sum)
		}
	})

	t.Run("JPEGAndOtherSizes", func(t *testing.T) {
		// A digit the model is sure of, drawn anew as pictures MNIST never
		// held: dark ink on white, five times the size, off the centre of
		// a wider canvas, as a JPEG; and light on dark, three times the
		// size, as a PNG.
		sure := -1
		for i, r := range results {
			if r.Label == int(test.Labels[i]) && r.Top[0].Probability > 0.99 {
				sure = i
				break
			}
		}
		if sure < 0 {
			t.Fatal("no test image classified right with a probability over 0.99")
		}
		src := mnistPicture(test, sure)
		jpegPath := filepath.Join(dir, "big.jpg")
		writePicture(t, jpegPath, enlarge(src, 5, 220, 160, image.Pt(10, 12), true))
		pngPath := filepath.Join(dir, "wide.png")
		writePicture(t, pngPath, enlarge(src, 3, 150, 100, image.Pt(60, 10), false))
		out, err := runCLI(t, "predict", "-m", ckpt, "-o", "json", jpegPath, pngPath)
		var got []prediction
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 {
			t.Fatalf("predict: %v\n%s", err, out)
		}
		want := int(test.Labels[sure])
		for i, bg := range []string{"light", "dark"} {
			if got[i].Label != want || string(got[i].Background) != bg {
				t.Errorf("%s: label %d on a %s background, want %d on %s (test image %d)", got[i].File, got[i].Label, got[i].Background, want, bg, sure)
			}
		}
	})

	t.Run("Errors", func(t *testing.T) {
		blank := filepath.Join(dir, "blank.png")
		writePicture(t, blank, image.NewGray(image.Rect(0, 0, 40, 40)))
		truncated := filepath.Join(dir, "truncated.png")
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		missing := filepath.Join(dir, "missing.png")
		other := otherShapeCheckpoint(t, dir)
		for _, c := range []struct {
			args []string
			want []string
		}{
			{[]string{files[0]}, []string{"--model"}},
			{[]string{"-m", ckpt}, []string{"requires at least 1 arg"}},
			{[]string{"-m", other, files[0]}, []string{other, "network input 32x32x1 (height x width x channels) does not match the data set's images, 28x28x1"}},
			{[]string{"-m", filepath.Join(dir, "none.ckpt"), files[0]}, []string{"none.ckpt", "no such file"}},
			// Every bad file is named, in one error.
			{[]string{"-m", ckpt, files[0], truncated, missing, blank}, []string{truncated, "truncated PNG", missing, "no such file", blank, "no ink"}},
			{[]string{"-m", ckpt, "--top", "0", files[0]}, []string{"--top 0"}},
			{[]string{"-m", ckpt, "-o", "yaml", files[0]}, []string{`--output "yaml"`}},
		} {
			out, err := runCLI(t, append([]string{"predict"}, c.args...)...)
			if err == nil {
				t.Errorf("predict %v succeeded:\n%s", c.args, out)
				continue
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("predict %v: %v, want it to say %q", c.args, err, w)
				}
			}
		}
	})
}

// checkPrediction holds one file's result to its form: the file, top
// classes in order of probability, the label the first of them.
func checkPrediction(t *testing.T, r prediction, file string, top int) {
	t.Helper()
	if r.File != file || len(r.Top) != top || r.Top[0].Label != r.Label {
		t.Fatalf("result %+v: want file %s, %d classes, the label first", r, file, top)
	}
	for i, c := range r.Top {
		if c.Probability < 0 || c.Probability > 1 || c.Label < 0 || c.Label > 9 || (i > 0 && c.Probability > r.Top[i-1].Probability) {
			t.Fatalf("result %+v: want classes 0 to 9 with probabilities in [0, 1], most probable first", r)
		}
	}
}

// mnistPicture is test image i as a grey picture, its pixels the IDX bytes.
func mnistPicture(test *dataset.Set, i int) *image.Gray {
	return &image.Gray{Pix: test.Image(i), Stride: test.Cols, Rect: image.Rect(0, 0, test.Cols, test.Rows)}
}

// enlarge draws src k times larger (each pixel a k×k block) at at on a w×h
// canvas, dark ink on white when paper is set.
func enlarge(src *image.Gray, k, w, h int, at image.Point, paper bool) *image.Gray {
	dst := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			v := uint8(0)
			if p := image.Pt(x, y).Sub(at).Div(k); x >= at.X && y >= at.Y && p.In(src.Rect) {
				v = src.GrayAt(p.X, p.Y).Y
			}
			if paper {
				v = 255 - v
			}
			dst.SetGray(x, y, color.Gray{Y: v})
		}
	}
	return dst
}

// writePicture writes img as a PNG, or a JPEG (quality 90) when the path
// ends in .jpg.
func writePicture(t *testing.T, path string, img image.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".jpg") {
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: 90})
	} else {
		err = png.Encode(f, img)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// otherShapeCheckpoint writes a valid checkpoint of lenet taking 32×32
// images, which no MNIST digit fits.
func otherShapeCheckpoint(t *testing.T, dir string) string {
	t.Helper()
	spec, err := model.Builtin("lenet")
	if err != nil {
		t.Fatal(err)
	}
	spec.Input.Height, spec.Input.Width = 32, 32
	net, err := model.New[float32](spec, kernels.NewReference[float32](), 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "other.ckpt")
	c := &model.Checkpoint{Spec: spec, Optimizer: model.OptimizerSpec{Type: model.OptSGD, LR: 0.1}, Params: net.ExportParams()}
	if err := coordinator.WriteCheckpointFile(path, c); err != nil {
		t.Fatal(err)
	}
	return path
}
