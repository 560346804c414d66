package viz

import (
	"fmt"

	"github.com/dpcnn/dpcnn/model"
)

// FilterTiles makes one tile per filter of a convolution weight in HWIO
// layout (size × size × in × out), each normalised to 0–255 on its own as
// in the book's figure 7-9. A filter over several input channels gives a
// tile per input channel, filter by filter.
func FilterTiles(w []float32, size, in, out int) ([]Tile, error) {
	if size < 1 || in < 1 || out < 1 || len(w) != size*size*in*out {
		return nil, fmt.Errorf("viz: filters: %d weights for %d×%d×%d×%d", len(w), size, size, in, out)
	}
	var tiles []Tile
	vals := make([]float32, size*size)
	for o := range out {
		for c := range in {
			for i := range size * size {
				vals[i] = w[(i*in+c)*out+o]
			}
			tiles = append(tiles, Tile{Width: size, Height: size, Pix: normalise(vals)})
		}
	}
	return tiles, nil
}

// FirstConv finds the first convolution of a network's parameters and
// returns its weight with its filter size, input channels and filters.
func FirstConv(spec model.Spec, params []model.Tensor) (w []float32, size, in, out int, err error) {
	for _, p := range params {
		if len(p.Shape) == 4 {
			return p.Data, p.Shape[0], p.Shape[2], p.Shape[3], nil
		}
	}
	return nil, 0, 0, 0, fmt.Errorf("viz: network %q has no convolution", spec.Name)
}

// FilterGrid is the grid of FilterTiles, a row per 16 tiles (or per
// filter's input channels when there are more), each weight a scale ×
// scale square.
func FilterGrid(title string, tiles []Tile, in, scale int) Grid {
	cols := 16
	if in > 1 {
		cols = in
	}
	return Grid{Title: title, Tiles: tiles, Columns: cols, Scale: scale, Gap: 4}
}
