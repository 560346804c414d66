package viz

import (
	"fmt"

	"github.com/dpcnn/dpcnn/model"
)

// FeatureGrid draws one sample's output of a layer (§7.6.2 of the book):
// a tile per channel, each normalised to 0–255 on its own, so a channel's
// pattern shows whatever its range. A layer without a spatial extent (an
// affine layer, 1 × 1 × units) is one tile of its units side by side.
// sample picks the sample of a batch.
func FeatureGrid(a model.Activation[float32], sample, scale int) (Grid, error) {
	per := a.Height * a.Width * a.Channels
	if per == 0 || sample < 0 || (sample+1)*per > len(a.Values) {
		return Grid{}, fmt.Errorf("viz: features of %s: sample %d of %d values of %d×%d×%d", a.Name, sample, len(a.Values), a.Height, a.Width, a.Channels)
	}
	vals := a.Values[sample*per : (sample+1)*per]
	title := fmt.Sprintf("%s (%s) %dx%dx%d", a.Name, a.Type, a.Height, a.Width, a.Channels)
	if a.Height == 1 && a.Width == 1 {
		return Grid{Title: title, Tiles: []Tile{{Width: a.Channels, Height: 1, Pix: normalise(vals)}},
			Columns: 1, Scale: scale, Gap: 4}, nil
	}
	tiles := make([]Tile, a.Channels)
	ch := make([]float32, a.Height*a.Width)
	for c := range a.Channels {
		for i := range ch {
			ch[i] = vals[i*a.Channels+c] // NHWC
		}
		tiles[c] = Tile{Width: a.Width, Height: a.Height, Pix: normalise(ch)}
	}
	return Grid{Title: title, Tiles: tiles, Columns: 16, Scale: scale, Gap: 4}, nil
}
