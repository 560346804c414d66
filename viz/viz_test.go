package viz

import (
	"bytes"
	"image/png"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dpcnn/dpcnn/model"
)

// pngSize encodes the grid's picture as PNG, decodes it and returns its
// size.
func pngSize(t *testing.T, g Grid) (int, int) {
	t.Helper()
	var buf bytes.Buffer
	if err := WritePNG(&buf, g.Image()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("the picture does not decode as PNG: %v", err)
	}
	return img.Bounds().Dx(), img.Bounds().Dy()
}

// Each filter's tile spans exactly 0 to 255, and the grid's picture
// decodes as a PNG of the size its layout gives.
func TestFilterGridSpansEveryGrey(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const size, in, out = 5, 1, 30
	w := make([]float32, size*size*in*out)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	tiles, err := FilterTiles(w, size, in, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(tiles) != out {
		t.Fatalf("%d tiles for %d filters", len(tiles), out)
	}
	for i, tile := range tiles {
		if slices.Min(tile.Pix) != 0 || slices.Max(tile.Pix) != 255 {
			t.Errorf("filter %d spans %d–%d, want 0–255", i, slices.Min(tile.Pix), slices.Max(tile.Pix))
		}
	}
	g := FilterGrid("conv1", tiles, in, 6)
	// 16 columns of 5×6 = 30 px, 2 rows, gaps of 4, a title line.
	wantW, wantH := 4+16*(30+4), 4+2*(30+4)+lineHeight+4
	if w, h := pngSize(t, g); w != wantW || h != wantH {
		t.Errorf("filter grid %d×%d, want %d×%d", w, h, wantW, wantH)
	}
	if _, err := FilterTiles(w[:10], size, in, out); err == nil {
		t.Error("FilterTiles of too few weights: no error")
	}
	// Several input channels: a tile each, a row per filter.
	multi, _ := FilterTiles(make([]float32, 3*3*4*2), 3, 4, 2)
	if len(multi) != 8 || FilterGrid("", multi, 4, 1).columns() != 4 {
		t.Errorf("%d tiles for 2 filters of 4 channels, want 8 in rows of 4", len(multi))
	}
}

// The feature maps of a spatial layer are a tile per channel; an affine
// layer's one row of its units.
func TestFeatureGrid(t *testing.T) {
	conv := model.Activation[float32]{Name: "conv1", Type: "conv", Height: 24, Width: 24, Channels: 30, Values: make([]float32, 2*24*24*30)}
	for i := range conv.Values {
		conv.Values[i] = float32(i % 7)
	}
	g, err := FeatureGrid(conv, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Tiles) != 30 || g.Tiles[0].Width != 24 {
		t.Fatalf("%d tiles of width %d, want 30 of 24", len(g.Tiles), g.Tiles[0].Width)
	}
	wantW, wantH := 4+16*(48+4), 4+2*(48+4)+lineHeight+4
	if w, h := pngSize(t, g); w != wantW || h != wantH {
		t.Errorf("feature grid %d×%d, want %d×%d", w, h, wantW, wantH)
	}
	aff := model.Activation[float32]{Name: "affine1", Type: "affine", Height: 1, Width: 1, Channels: 100, Values: make([]float32, 100)}
	g, err = FeatureGrid(aff, 0, 3)
	if err != nil || len(g.Tiles) != 1 || g.Tiles[0].Width != 100 || g.Tiles[0].Height != 1 {
		t.Fatalf("affine features %+v, %v: want one tile of 100×1", g.Tiles, err)
	}
	if _, err := FeatureGrid(aff, 1, 3); err == nil {
		t.Error("features of a sample past the batch: no error")
	}
}

// Misclassified images carry "true->predicted" captions under them, and
// the confusion matrix counts every prediction once.
func TestMisclassifiedAndConfusion(t *testing.T) {
	ms := []Misclassified{{Index: 8, Pix: make([]uint8, 28*28), Label: 5, Predicted: 6}, {Index: 9, Pix: make([]uint8, 28*28), Label: 4, Predicted: 9}}
	g, err := MisclassifiedGrid("errors", ms, 28, 28, 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if g.Tiles[0].Caption != "5->6" {
		t.Errorf("caption %q, want 5->6", g.Tiles[0].Caption)
	}
	wantW, wantH := 6+2*(56+6), 6+1*(56+lineHeight+6)+lineHeight+6
	if w, h := pngSize(t, g); w != wantW || h != wantH {
		t.Errorf("misclassified grid %d×%d, want %d×%d", w, h, wantW, wantH)
	}
	if _, err := MisclassifiedGrid("", []Misclassified{{Pix: make([]uint8, 5)}}, 28, 28, 10, 1); err == nil {
		t.Error("a misclassified image of the wrong size: no error")
	}

	m := NewConfusion(10)
	for i := range 1000 {
		m.Add(i%10, (i*7)%10)
	}
	if m.Total() != 1000 {
		t.Errorf("the matrix holds %d predictions, want 1000", m.Total())
	}
	var buf bytes.Buffer
	if err := WritePNG(&buf, ConfusionImage(m)); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if w, h := ConfusionSize(10); img.Bounds().Dx() != w || img.Bounds().Dy() != h || w != 440 {
		t.Errorf("confusion picture %v, want %d×%d", img.Bounds(), w, h)
	}
}
