package train

import (
	"math"
	"time"
)

// ObserveSpeed folds one measurement of a worker's training speed, images
// computed in d, into its estimate in images/s (0 while there is none):
// the first measurement is taken as it is, each later one averaged with
// the estimate. A measurement that gives no positive, finite rate changes
// nothing. The engine sizes shares and deadlines by this estimate; the
// coordinator shows the same figure for each worker.
func ObserveSpeed(estimate float64, images int, d time.Duration) float64 {
	rate := float64(images) / d.Seconds()
	if !(rate > 0) || math.IsInf(rate, 0) {
		return estimate
	}
	if estimate == 0 {
		return rate
	}
	return (estimate + rate) / 2
}
