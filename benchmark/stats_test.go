package benchmark

import (
	"math"
	"testing"
)

func TestStatistics(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3 1 2: %v, want 2", m)
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of 4 1 3 2: %v, want 2.5", m)
	}
	if m := Median(nil); !math.IsNaN(m) {
		t.Errorf("median of nothing: %v, want NaN", m)
	}
	if m := OlympicMean([]float64{10, 1, 2, 3, 100}); m != 5 {
		t.Errorf("olympic mean of 10 1 2 3 100: %v, want 5 (the mean of 2, 3 and 10)", m)
	}
	if m := OlympicMean([]float64{1, 3}); m != 2 {
		t.Errorf("olympic mean of two values: %v, want their mean 2", m)
	}
	sp := SpreadOf([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	if sp.Min != 2 || sp.Max != 9 || math.Abs(sp.StdDev-2.138) > 1e-3 {
		t.Errorf("spread %+v, want min 2, max 9, sample standard deviation 2.138", sp)
	}
	if s := Slope([]float64{1, 2, 4, 8}, []float64{3, 5, 9, 17}); math.Abs(s-2) > 1e-12 {
		t.Errorf("slope of y = 2x + 1: %v, want 2", s)
	}
	if s := Slope([]float64{4}, []float64{1}); s != 0 {
		t.Errorf("slope of one point: %v, want 0", s)
	}
}
