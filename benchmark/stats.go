package benchmark

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
)

// Spread is how a figure varied over rounds or runs.
type Spread struct {
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	StdDev float64 `json:"stdDev"` // sample standard deviation; 0 for one value
}

// Median is the median of xs (the mean of the middle two for an even
// count); NaN for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return stat.Quantile(0.5, stat.Empirical, s, nil)
}

// SpreadOf is the spread of xs; zero for none.
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	sp := Spread{Min: slices.Min(xs), Max: slices.Max(xs)}
	if len(xs) > 1 {
		sp.StdDev = stat.StdDev(xs, nil)
	}
	return sp
}

// OlympicMean is the mean of xs without its smallest and its largest
// value (MLPerf's rule for time to accuracy); with fewer than three
// values, the plain mean; NaN for none.
func OlympicMean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) >= 3 {
		s = s[1 : len(s)-1]
	}
	return stat.Mean(s, nil)
}

// Slope is the least-squares slope of ys against xs; 0 with fewer than
// two distinct xs.
func Slope(xs, ys []float64) float64 {
	if len(xs) < 2 || slices.Min(xs) == slices.Max(xs) {
		return 0
	}
	_, beta := stat.LinearRegression(xs, ys, nil, false)
	return beta
}
