package viz

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot/plotter"
)

// testHistory is two epochs of ten steps with an evaluation after each.
func testHistory() History { return testHistoryOf(20) }

// testHistoryOf is n steps in epochs of n/2 with an evaluation after each.
func testHistoryOf(n int64) History {
	var h History
	for s := int64(1); s <= n; s++ {
		p := Point{Step: s, Epoch: (s-1)/(n/2) + 1, Elapsed: time.Duration(s) * 150 * time.Millisecond,
			Loss: 2.3 / float64(s), TrainAccuracy: 1 - 0.9/float64(s)}
		if s%(n/2) == 0 {
			p.Evaluated, p.TestAccuracy = true, 0.9+float64(s)/1000
		}
		h.Points = append(h.Points, p)
	}
	h.TrainAccuracyConditions = "dropout on"
	return h
}

func TestCurvesPNGSize(t *testing.T) {
	diverged := testHistory()
	diverged.Points[5].Loss = math.NaN()
	diverged.Points[6].Loss = math.Inf(1)
	for _, c := range []struct {
		name          string
		h             History
		width, height int
	}{
		{"two epochs", testHistory(), 1200, 800},
		{"smallest", testHistory(), MinCurvesWidth, MinCurvesHeight},
		{"many steps, smoothed", testHistoryOf(1000), 1200, 800},
		{"odd size", testHistory(), 641, 479},
		{"one point, no evaluation", History{Points: []Point{{Step: 1, Epoch: 1, Loss: 2.3, TrainAccuracy: 0.1}}}, 800, 600},
		{"an evaluation alone", History{Points: []Point{{Step: 0, Evaluated: true, TestAccuracy: 0.1}}}, 800, 600},
		{"not finite losses", diverged, 800, 600},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Curves(&b, c.h, c.width, c.height); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if got := img.Bounds().Size(); got.X != c.width || got.Y != c.height {
				t.Errorf("PNG is %v, want %dx%d", got, c.width, c.height)
			}
		})
	}
}

func TestCurvesDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if err := Curves(&a, testHistory(), 900, 600); err != nil {
		t.Fatal(err)
	}
	if err := Curves(&b, testHistory(), 900, 600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the same history drew different bytes")
	}
	// The conditions reach the picture: their legend is drawn.
	plain := testHistory()
	plain.TrainAccuracyConditions = ""
	var c bytes.Buffer
	if err := Curves(&c, plain, 900, 600); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("the training accuracy's conditions changed nothing in the picture")
	}
}

func TestCurvesRefusals(t *testing.T) {
	for _, c := range []struct {
		name          string
		h             History
		width, height int
		want          string
	}{
		{"empty history", History{}, 800, 600, "empty history"},
		{"too narrow", testHistory(), MinCurvesWidth - 1, 600, "want at least"},
		{"too low", testHistory(), 800, MinCurvesHeight - 1, "want at least"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			err := Curves(&b, c.h, c.width, c.height)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one saying %q", err, c.want)
			}
			if b.Len() != 0 {
				t.Errorf("wrote %d bytes with an error", b.Len())
			}
		})
	}
}

func TestCurvesRunningMean(t *testing.T) {
	for n, want := range map[int]int{0: 1, 100: 1, 119: 1, 120: 3, 160: 5, 600: 15, 6000: 151} {
		if got := smoothingWindow(n); got != want {
			t.Errorf("smoothingWindow(%d) = %d, want %d", n, got, want)
		}
	}
	xys := plotter.XYs{{X: 1, Y: 0}, {X: 2, Y: 3}, {X: 3, Y: 6}, {X: 4, Y: 0}, {X: 5, Y: 9}}
	want := []float64{1.5, 3, 3, 5, 4.5} // the ends average what there is
	got := runningMean(xys, 3)
	for i := range want {
		if got[i].X != xys[i].X || got[i].Y != want[i] {
			t.Errorf("runningMean point %d = %v, want (%g, %g)", i, got[i], xys[i].X, want[i])
		}
	}
}
