package kernelstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestBatchNorm checks BatchNormForwardTrain (y, mean, invStd and the
// statistics, also without them), BatchNormForwardInfer and
// BatchNormBackward (with and without dx) on every combination of awkward
// row counts (one row, where the variance is 0, up to rows that do not fill
// any block) and channel counts, with channels far from zero mean and a
// constant channel (variance 0 with many rows).
//
// A backend computes y from its own float32 mean and invStd (so that its
// backward pass sees forward's x̂), so the tolerance of y adds to elementTol
// the errors those two are allowed (elementTol for the mean, a relative
// error growing with the rows for invStd, as a float32 variance's would)
// carried into y: |gamma|·invStd·(mean error + relative invStd error·|x−mean|).
// The backward pass is given the reference's mean and invStd rounded to
// float32, so the reference and the backend compute the same x̂.
func TestBatchNorm(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(1400)
	var f failures
	i := 0
	for _, rows := range []int{1, 2, 3, 7, 100, 333} {
		for _, c := range []int{1, 3, 16, 17, 64} {
			p := kernels.BatchNormParams{Rows: rows, C: c, Eps: 1e-5, StatWeight: 0.1}
			if i%2 == 1 {
				p.Eps, p.StatWeight = 1e-3, 1
			}
			i++
			checkBatchNorm(t, &f, b, rng, p)
		}
	}
}

// bnInput returns x (Rows×C) with each channel uniform over [m−s, m+s) for
// its own m in [−3, 3) and s in [0.1, 2), and channel 1, when there are
// three channels or more, constant at 0.75 (which float32 sums exactly).
func bnInput(rng *rand.Rand, p kernels.BatchNormParams) *buffer {
	x := newBuffer("x", p.Rows*p.C)
	for c := range p.C {
		m, s := -3+6*rng.Float64(), 0.1+1.9*rng.Float64()
		for r := range p.Rows {
			v := m + s*(2*rng.Float64()-1)
			if c == 1 && p.C >= 3 {
				v = 0.75
			}
			x.data()[r*p.C+c] = float32(v)
		}
	}
	return x.seal()
}

func checkBatchNorm(t *testing.T, f *failures, b kernels.Backend[float32], rng *rand.Rand, p kernels.BatchNormParams) {
	n, C := p.Rows*p.C, p.C
	tag := fmt.Sprintf("%+v", p)
	x := bnInput(rng, p)
	gamma := randomBuffer(rng, "gamma", C, -2, 2)
	beta := randomBuffer(rng, "beta", C, -1, 1)
	dy := randomBuffer(rng, "dy", n, -1, 1)
	where := atRowCol(C)

	// The reference's forward pass.
	wantY, wantMean, wantInv := make([]float64, n), make([]float64, C), make([]float64, C)
	wantMeanStat, wantVarStat := make([]float64, C), make([]float64, C)
	ref().BatchNormForwardTrain(p, x.wide(), gamma.wide(), beta.wide(), wantY, wantMean, wantInv, wantMeanStat, wantVarStat)
	// mean and invStd are checked with elementTol and statTol; y is
	// computed from them, so their errors, propagated, are allowed in y.
	statTol := tolerance{atol: 1e-6, rtol: 1e-5 + 2e-7*float64(p.Rows)}
	yLimit := make([]float64, n)
	for i := range yLimit {
		c := i % C
		g, inv := math.Abs(float64(gamma.data()[c])), wantInv[c]
		dev := math.Abs(float64(x.data()[i]) - wantMean[c])
		meanErr := elementTol.atol + elementTol.rtol*math.Abs(wantMean[c])
		yLimit[i] = elementTol.atol + elementTol.rtol*math.Abs(wantY[i]) + g*inv*(meanErr+statTol.rtol*dev)
	}

	var trainY []float32
	for _, stats := range []bool{true, false} {
		what := fmt.Sprintf("BatchNormForwardTrain %s stats=%v", tag, stats)
		y := newBuffer("y", n).seal()
		mean, inv := newBuffer("mean", C).seal(), newBuffer("invStd", C).seal()
		meanStat, varStat := newBuffer("meanStat", C).seal(), newBuffer("varStat", C).seal()
		var ms, vs []float32
		if stats {
			ms, vs = meanStat.data(), varStat.data()
		}
		b.BatchNormForwardTrain(p, x.data(), gamma.data(), beta.data(), y.data(), mean.data(), inv.data(), ms, vs)
		ok := x.checkUnchanged(t, what) && gamma.checkUnchanged(t, what) && beta.checkUnchanged(t, what) &&
			y.checkGuards(t, what) && mean.checkGuards(t, what) && inv.checkGuards(t, what) &&
			compareWithin(t, what+" y", y.data(), wantY, yLimit, where) &&
			compare(t, what+" mean", mean.data(), wantMean, elementTol, nil) &&
			compare(t, what+" invStd", inv.data(), wantInv, statTol, nil)
		if stats {
			ok = ok && meanStat.checkGuards(t, what) && varStat.checkGuards(t, what) &&
				compare(t, what+" meanStat", meanStat.data(), wantMeanStat, elementTol, nil) &&
				compare(t, what+" varStat", varStat.data(), wantVarStat, statTol, nil)
			trainY = append([]float32(nil), y.data()...)
		} else {
			ok = ok && meanStat.checkUnchanged(t, what) && varStat.checkUnchanged(t, what) &&
				sameBits(t, what+" y (against the run with statistics)", y.data(), trainY)
		}
		f.note(t, ok)
	}

	// Inference with running statistics of their own, variances ≥ 0.25.
	{
		what := "BatchNormForwardInfer " + tag
		runMean := randomBuffer(rng, "runMean", C, -3, 3)
		runVar := randomBuffer(rng, "runVar", C, 0.25, 3)
		y := newBuffer("y", n).seal()
		want := make([]float64, n)
		ref().BatchNormForwardInfer(p, x.wide(), gamma.wide(), beta.wide(), runMean.wide(), runVar.wide(), want)
		limit := make([]float64, n)
		for i := range limit {
			c := i % C
			scaled := float64(gamma.data()[c]) * (float64(x.data()[i]) - float64(runMean.data()[c])) / math.Sqrt(float64(runVar.data()[c])+p.Eps)
			limit[i] = elementTol.atol + elementTol.rtol*math.Abs(want[i]) + 0x1p-21*math.Abs(scaled)
		}
		b.BatchNormForwardInfer(p, x.data(), gamma.data(), beta.data(), runMean.data(), runVar.data(), y.data())
		f.note(t, x.checkUnchanged(t, what) && gamma.checkUnchanged(t, what) && beta.checkUnchanged(t, what) &&
			runMean.checkUnchanged(t, what) && runVar.checkUnchanged(t, what) && y.checkGuards(t, what) &&
			compareWithin(t, what, y.data(), want, limit, where))
	}

	// The backward pass gets the reference's mean and invStd as a float32
	// forward pass would have stored them.
	mean, inv := newBuffer("mean", C), newBuffer("invStd", C)
	copy(mean.data(), narrow(wantMean))
	copy(inv.data(), narrow(wantInv))
	mean.seal()
	inv.seal()
	wantDx, wantDgamma, wantDbeta := make([]float64, n), make([]float64, C), make([]float64, C)
	ref().BatchNormBackward(p, x.wide(), gamma.wide(), mean.wide(), inv.wide(), dy.wide(), wantDx, wantDgamma, wantDbeta)
	// dx is gamma·invStd times a difference of terms of order one, the
	// means over the rows among them.
	dxLimit := make([]float64, n)
	for i := range dxLimit {
		c := i % C
		dxLimit[i] = sumTol(p.Rows).atol*math.Abs(float64(gamma.data()[c])*float64(inv.data()[c])) + 1e-5*math.Abs(wantDx[i])
	}
	var sums [2][]float32
	for _, withDx := range []bool{true, false} {
		what := fmt.Sprintf("BatchNormBackward %s dx=%v", tag, withDx)
		dx := newBuffer("dx", n).seal()
		dgamma, dbeta := newBuffer("dgamma", C).seal(), newBuffer("dbeta", C).seal()
		var dxs []float32
		if withDx {
			dxs = dx.data()
		}
		b.BatchNormBackward(p, x.data(), gamma.data(), mean.data(), inv.data(), dy.data(), dxs, dgamma.data(), dbeta.data())
		ok := x.checkUnchanged(t, what) && gamma.checkUnchanged(t, what) && mean.checkUnchanged(t, what) &&
			inv.checkUnchanged(t, what) && dy.checkUnchanged(t, what) &&
			dgamma.checkGuards(t, what) && dbeta.checkGuards(t, what) &&
			compare(t, what+" dbeta", dbeta.data(), wantDbeta, sumTol(p.Rows), nil) &&
			compare(t, what+" dgamma", dgamma.data(), wantDgamma, sumTol(p.Rows), nil)
		if withDx {
			ok = ok && dx.checkGuards(t, what) && compareWithin(t, what+" dx", dx.data(), wantDx, dxLimit, where)
			sums = [2][]float32{append([]float32(nil), dgamma.data()...), append([]float32(nil), dbeta.data()...)}
		} else {
			ok = ok && dx.checkUnchanged(t, what) &&
				sameBits(t, what+" dgamma (against the run with dx)", dgamma.data(), sums[0]) &&
				sameBits(t, what+" dbeta (against the run with dx)", dbeta.data(), sums[1])
		}
		f.note(t, ok)
	}
}

// compareWithin is compare with a limit of its own for each element:
// |got − want| ≤ limit[i].
func compareWithin(t *testing.T, what string, got []float32, want, limit []float64, where func(i int) string) bool {
	t.Helper()
	bad := 0
	for i, w := range want {
		g := float64(got[i])
		if g == w || (math.IsNaN(g) && math.IsNaN(w)) {
			continue
		}
		if diff := math.Abs(g - w); !(diff <= limit[i]) {
			if bad++; bad <= maxReported {
				loc := fmt.Sprintf("[%d]", i)
				if where != nil {
					loc += " " + where(i)
				}
				t.Errorf("%s: element %s: got %v, want %v (|diff| %.3g > tol %.3g)", what, loc, got[i], w, diff, limit[i])
			}
		}
	}
	if bad > maxReported {
		t.Errorf("%s: %d of %d elements mismatch", what, bad, len(want))
	}
	return bad == 0
}

// sameBits reports the first element of got whose bits differ from want's:
// for results that must not depend on which optional outputs were asked for.
func sameBits(t *testing.T, what string, got, want []float32) bool {
	t.Helper()
	for i, w := range want {
		if math.Float32bits(got[i]) != math.Float32bits(w) {
			t.Errorf("%s: element %d is %v, was %v", what, i, got[i], w)
			return false
		}
	}
	return true
}
