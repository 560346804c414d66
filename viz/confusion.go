package viz

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"strconv"
)

// Confusion counts, for each true label (row), how often each label was
// predicted (column).
type Confusion [][]int

// NewConfusion is an empty matrix of classes × classes.
func NewConfusion(classes int) Confusion {
	m := make(Confusion, classes)
	for i := range m {
		m[i] = make([]int, classes)
	}
	return m
}

// Add counts one prediction.
func (m Confusion) Add(label, predicted int) { m[label][predicted]++ }

// Total is the number of predictions counted.
func (m Confusion) Total() int {
	n := 0
	for _, row := range m {
		for _, v := range row {
			n += v
		}
	}
	return n
}

// confusionCell is the side of one cell of the drawn matrix, in pixels:
// room for a four-digit count.
const confusionCell = 40

// ConfusionSize is the size of ConfusionImage's picture for classes
// classes: a title line, a row of column labels, and classes rows of
// cells with their row label on the left.
func ConfusionSize(classes int) (w, h int) {
	return confusionCell * (classes + 1), confusionCell*(classes+1) + 2*lineHeight
}

// ConfusionImage draws the matrix as a heat map: each cell's blue is its
// share of its row (how often that true label got that prediction), and
// the count is written in it. Rows are true labels, columns predictions.
func ConfusionImage(m Confusion) *image.RGBA {
	n := len(m)
	w, h := ConfusionSize(n)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{paper}, image.Point{}, draw.Src)
	drawText(img, fmt.Sprintf("confusion: rows true, columns predicted (%d images)", m.Total()), 4, 0)
	top := 2 * lineHeight
	center := func(s string, x, y int) {
		drawText(img, s, x+(confusionCell-textWidth(s))/2, y+(confusionCell-lineHeight)/2)
	}
	for i := range n {
		center(strconv.Itoa(i), confusionCell*(i+1), top)   // column label
		center(strconv.Itoa(i), 0, top+confusionCell*(i+1)) // row label
		rowSum := 0
		for _, v := range m[i] {
			rowSum += v
		}
		for j, v := range m[i] {
			share := 0.0
			if rowSum > 0 {
				share = float64(v) / float64(rowSum)
			}
			// White for none, deep blue for all of the row.
			c := color.RGBA{uint8(255 - 215*share), uint8(255 - 165*share), 255, 0xff}
			x, y := confusionCell*(j+1), top+confusionCell*(i+1)
			draw.Draw(img, image.Rect(x+1, y+1, x+confusionCell-1, y+confusionCell-1), &image.Uniform{c}, image.Point{}, draw.Src)
			if v > 0 {
				center(strconv.Itoa(v), x, y)
			}
		}
	}
	return img
}
