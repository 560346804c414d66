package viz

import "fmt"

// Misclassified is a test image the network got wrong.
type Misclassified struct {
	Index     int     // in the test set
	Pix       []uint8 // the image, Width × Height, 0 background to 255 ink
	Label     int     // the true label
	Predicted int
}

// MisclassifiedGrid shows the images white on black as MNIST stores them,
// each captioned "true->predicted" like the book's figure 8-3 (the
// caption font has no arrow).
func MisclassifiedGrid(title string, ms []Misclassified, width, height, columns, scale int) (Grid, error) {
	tiles := make([]Tile, len(ms))
	for i, m := range ms {
		if len(m.Pix) != width*height {
			return Grid{}, fmt.Errorf("viz: misclassified image %d: %d pixels, want %d×%d", m.Index, len(m.Pix), width, height)
		}
		tiles[i] = Tile{Width: width, Height: height, Pix: m.Pix, Caption: fmt.Sprintf("%d->%d", m.Label, m.Predicted)}
	}
	return Grid{Title: title, Tiles: tiles, Columns: columns, Scale: scale, Gap: 6}, nil
}
