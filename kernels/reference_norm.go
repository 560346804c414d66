package kernels

import "math"

// Batch normalisation, channel by channel, every sum in float64 in row
// order. The CPU backend and the CUDA kernels compute the same expressions
// in the same order (dx from the rounded dbeta and dgamma included), and
// every product that is added to something is rounded explicitly, so that
// no compiler fuses it: the float32 results are the same bits everywhere.

// bnStats returns the mean of channel c of x, Σ (x−mean)² (the sum of
// squared deviations) and the variance Σ (x−mean)²/Rows, in two passes.
func bnStats[T Float](p BatchNormParams, x []T, c int) (mean, squares, variance float64) {
	var sum float64
	for r := range p.Rows {
		sum += float64(x[r*p.C+c])
	}
	mean = sum / float64(p.Rows)
	for r := range p.Rows {
		d := float64(x[r*p.C+c]) - mean
		squares += float64(d * d)
	}
	return mean, squares, squares / float64(p.Rows)
}

// bnUnbiased is the unbiased variance Σ (x−mean)²/(Rows−1) (the biased
// variance itself when Rows is 1).
func bnUnbiased(p BatchNormParams, squares, variance float64) float64 {
	if p.Rows > 1 {
		return squares / float64(p.Rows-1)
	}
	return variance
}

// BatchNormForwardTrain computes, per channel, the mean and the biased
// variance v in float64 (see bnStats), mean[c] = T(mean) and invStd[c] =
// T(1/√(v+Eps)), y = T(gamma·(x−mean[c])·invStd[c] + beta) in float64 from
// the rounded mean[c] and invStd[c], and the statistics meanStat[c] =
// T(StatWeight·mean), varStat[c] = T(StatWeight·Σ(x−mean)²/(Rows−1)) (each
// when it is not nil).
func (*Reference[T]) BatchNormForwardTrain(p BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat []T) {
	for c := range p.C {
		m, squares, v := bnStats(p, x, c)
		mean[c] = T(m)
		invStd[c] = T(1 / math.Sqrt(v+p.Eps))
		if meanStat != nil {
			meanStat[c] = T(p.StatWeight * m)
		}
		if varStat != nil {
			varStat[c] = T(p.StatWeight * bnUnbiased(p, squares, v))
		}
		g, b := float64(gamma[c]), float64(beta[c])
		mc, inv := float64(mean[c]), float64(invStd[c])
		for r := range p.Rows {
			i := r*p.C + c
			y[i] = T(float64(g*(float64(x[i])-mc)*inv) + b)
		}
	}
}

// BatchNormForwardInfer computes y = T(gamma·(x−runMean)/√(runVar+Eps) +
// beta) in float64.
func (*Reference[T]) BatchNormForwardInfer(p BatchNormParams, x, gamma, beta, runMean, runVar, y []T) {
	for c := range p.C {
		g, b := float64(gamma[c]), float64(beta[c])
		m, s := float64(runMean[c]), math.Sqrt(float64(runVar[c])+p.Eps)
		for r := range p.Rows {
			i := r*p.C + c
			y[i] = T(float64(g*(float64(x[i])-m)/s) + b)
		}
	}
}

// BatchNormBackward sums, per channel in float64, dbeta[c] = T(Σ dy) and
// dgamma[c] = T(Σ dy·x̂) with x̂ = (x−mean[c])·invStd[c], then computes dx =
// T(gamma·invStd·((dy − dbeta[c]/Rows) − x̂·dgamma[c]/Rows)) in float64 from
// the rounded dbeta[c] and dgamma[c].
func (*Reference[T]) BatchNormBackward(p BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta []T) {
	for c := range p.C {
		m, inv := float64(mean[c]), float64(invStd[c])
		var sumDy, sumDyXhat float64
		for r := range p.Rows {
			i := r*p.C + c
			d := float64(dy[i])
			sumDy += d
			sumDyXhat += float64(d * ((float64(x[i]) - m) * inv))
		}
		dbeta[c], dgamma[c] = T(sumDy), T(sumDyXhat)
		if dx == nil {
			continue
		}
		k := float64(gamma[c]) * inv
		meanDy, meanDyXhat := float64(dbeta[c])/float64(p.Rows), float64(dgamma[c])/float64(p.Rows)
		for r := range p.Rows {
			i := r*p.C + c
			xhat := (float64(x[i]) - m) * inv
			dx[i] = T(k * (float64(dy[i]) - meanDy - float64(xhat*meanDyXhat)))
		}
	}
}
