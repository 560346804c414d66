package main

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/viz"
)

// vizCheckpoint trains the simple net ten steps and returns its
// checkpoint.
func vizCheckpoint(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, "train", "--in-process", "--net", "simple", "--epochs", "1", "--batch", "50",
		"--train-limit", "500", "--test-limit", "100", "--out", dir)
	return filepath.Join(dir, "checkpoint.ckpt")
}

// decodePNG reads a PNG file the command wrote.
func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s does not decode as PNG: %v", path, err)
	}
	return img
}

// Every picture of a checkpoint decodes as a PNG of the size its layout
// gives.
func TestVizPicturesOfACheckpoint(t *testing.T) {
	ckpt := vizCheckpoint(t)
	dir := t.TempDir()

	// filters: the simple net's 30 filters of 5×5, twice (before, after).
	out := filepath.Join(dir, "filters.png")
	if got := mustRun(t, "viz", "filters", ckpt, "-o", out, "--scale", "8"); !strings.Contains(got, out) {
		t.Errorf("viz filters printed %q, want the path written", got)
	}
	tiles, _ := viz.FilterTiles(make([]float32, 5*5*30), 5, 1, 30)
	gw, gh := viz.FilterGrid("x", tiles, 1, 8).Size()
	if b := decodePNG(t, out).Bounds(); b.Dx() != gw || b.Dy() != 2*gh {
		t.Errorf("filters picture %v, want %d×%d", b, gw, 2*gh)
	}

	// errors and confusion on 200 test images.
	out = filepath.Join(dir, "errors.png")
	mustRun(t, "viz", "errors", ckpt, "-o", out, "--test-limit", "200", "--max", "20")
	if b := decodePNG(t, out).Bounds(); b.Dx() < 10*2*28 || b.Dy() < 2*28 {
		t.Errorf("errors picture %v: want rows of ten 56-pixel images", b)
	}
	out = filepath.Join(dir, "confusion.png")
	mustRun(t, "viz", "confusion", ckpt, "-o", out, "--test-limit", "200")
	if w, h := viz.ConfusionSize(10); decodePNG(t, out).Bounds() != image.Rect(0, 0, w, h) {
		t.Errorf("confusion picture %v, want %d×%d", decodePNG(t, out).Bounds(), w, h)
	}

	// features: the input and each of the simple net's layers.
	out = filepath.Join(dir, "features")
	got := mustRun(t, "viz", "features", ckpt, "--image", "7", "-o", out)
	want := []string{"00-input.png", "01-conv1.png", "02-relu1.png", "03-maxpool1.png", "04-affine1.png", "05-relu2.png", "06-affine2.png"}
	for _, name := range want {
		if !strings.Contains(got, name) {
			t.Errorf("viz features printed no %s:\n%s", name, got)
			continue
		}
		decodePNG(t, filepath.Join(out, name))
	}
	// conv1: 30 maps of 24×24 at scale 2, in rows of 16.
	if b := decodePNG(t, filepath.Join(out, "01-conv1.png")).Bounds(); b.Dx() != 4+16*(48+4) {
		t.Errorf("conv1's maps %v, want %d wide", b, 4+16*(48+4))
	}
}

func TestVizRefusesBadInput(t *testing.T) {
	ckpt := vizCheckpoint(t)
	garbage := filepath.Join(t.TempDir(), "garbage.ckpt")
	os.WriteFile(garbage, []byte("not a checkpoint"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"viz"}, "say what to draw"},
		{[]string{"viz", "filters", garbage}, garbage},
		{[]string{"viz", "filters", ckpt, "--scale", "0"}, "--scale 0"},
		{[]string{"viz", "features", ckpt, "--image", "10000"}, "--image 10000"},
		{[]string{"viz", "errors", ckpt, "--max", "0"}, "--max 0"},
		{[]string{"viz", "confusion", ckpt, "--test-limit", "-1"}, "--test-limit -1"},
	} {
		if _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cnnctl %s: %v, want an error naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}
