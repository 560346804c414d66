package viz

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Tile is one grey picture of a grid: Width × Height bytes, row-major,
// 0 black to 255 white, with an optional caption under it.
type Tile struct {
	Width, Height int
	Pix           []uint8
	Caption       string
}

// Grid lays tiles out in rows of Columns, each pixel Scale × Scale
// screen pixels, Gap pixels apart, under an optional Title. Tiles of one
// grid share a size (the first tile's).
type Grid struct {
	Title   string
	Tiles   []Tile
	Columns int
	Scale   int
	Gap     int
}

// The caption and title font: basicfont's 7×13 face, which needs no
// font file.
var face = basicfont.Face7x13

const lineHeight = 13

// background and ink colours of every picture.
var (
	paper = color.RGBA{0xff, 0xff, 0xff, 0xff}
	ink   = color.RGBA{0x20, 0x20, 0x20, 0xff}
)

func (g Grid) columns() int {
	return max(1, min(g.Columns, len(g.Tiles)))
}

func (g Grid) rows() int {
	c := g.columns()
	return (len(g.Tiles) + c - 1) / c
}

func (g Grid) cell() (w, h int) {
	if len(g.Tiles) == 0 {
		return 0, 0
	}
	t := g.Tiles[0]
	w, h = t.Width*g.Scale, t.Height*g.Scale
	for _, t := range g.Tiles {
		if t.Caption != "" {
			h += lineHeight
			w = max(w, textWidth(t.Caption))
			break
		}
	}
	return w, h
}

// Size is the grid's size in pixels.
func (g Grid) Size() (w, h int) {
	cw, ch := g.cell()
	c, r := g.columns(), g.rows()
	w, h = g.Gap+c*(cw+g.Gap), g.Gap+r*(ch+g.Gap)
	if g.Title != "" {
		h += lineHeight + g.Gap
		w = max(w, textWidth(g.Title)+2*g.Gap)
	}
	return w, h
}

// Draw draws the grid into dst with its top-left corner at at.
func (g Grid) Draw(dst draw.Image, at image.Point) {
	y0 := at.Y + g.Gap
	if g.Title != "" {
		drawText(dst, g.Title, at.X+g.Gap, y0)
		y0 += lineHeight + g.Gap
	}
	cw, ch := g.cell()
	c := g.columns()
	for i, t := range g.Tiles {
		x := at.X + g.Gap + (i%c)*(cw+g.Gap)
		y := y0 + (i/c)*(ch+g.Gap)
		for ty := range t.Height {
			for tx := range t.Width {
				v := t.Pix[ty*t.Width+tx]
				r := image.Rect(x+tx*g.Scale, y+ty*g.Scale, x+(tx+1)*g.Scale, y+(ty+1)*g.Scale)
				draw.Draw(dst, r, &image.Uniform{color.RGBA{v, v, v, 0xff}}, image.Point{}, draw.Src)
			}
		}
		if t.Caption != "" {
			drawText(dst, t.Caption, x, y+t.Height*g.Scale)
		}
	}
}

// Image draws the grid on a white picture of its own size.
func (g Grid) Image() *image.RGBA {
	w, h := g.Size()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{paper}, image.Point{}, draw.Src)
	g.Draw(img, image.Point{})
	return img
}

// Stack draws grids one under the other on one white picture.
func Stack(grids ...Grid) *image.RGBA {
	w, h := 0, 0
	for _, g := range grids {
		gw, gh := g.Size()
		w, h = max(w, gw), h+gh
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{paper}, image.Point{}, draw.Src)
	y := 0
	for _, g := range grids {
		g.Draw(img, image.Point{0, y})
		_, gh := g.Size()
		y += gh
	}
	return img
}

// WritePNG encodes img as PNG.
func WritePNG(w io.Writer, img image.Image) error {
	return png.Encode(w, img)
}

// textWidth is the width of s in the caption font.
func textWidth(s string) int {
	return font.MeasureString(face, s).Round()
}

// drawText writes s with its top-left corner at (x, y).
func drawText(dst draw.Image, s string, x, y int) {
	d := font.Drawer{Dst: dst, Src: &image.Uniform{ink}, Face: face,
		Dot: fixed.P(x, y+face.Ascent)}
	d.DrawString(s)
}

// normalise maps vals linearly onto 0–255, the smallest to 0 and the
// largest to 255 (the book's figure 7-9 normalises each filter so); a
// constant tile is mid-grey.
func normalise[T ~float32 | ~float64](vals []T) []uint8 {
	lo, hi := vals[0], vals[0]
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	pix := make([]uint8, len(vals))
	for i, v := range vals {
		if hi == lo {
			pix[i] = 128
			continue
		}
		pix[i] = uint8(float64(v-lo)/float64(hi-lo)*255 + 0.5)
	}
	return pix
}
