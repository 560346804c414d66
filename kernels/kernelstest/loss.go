package kernelstest

import (
	"fmt"
	"math"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestSoftmaxCrossEntropy checks probabilities, the scaled gradient, the
// loss sum (including rows whose probability of the label is under 1e-7,
// where the log is clamped, and rows of large logits, which overflow a naive
// exp) and the count of correct rows (on logits without ties).
func TestSoftmaxCrossEntropy(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(1100)
	var f failures
	for _, c := range []struct {
		n, classes int
		scale      float32
		spread     float64 // logits are uniform in [−spread, spread)
	}{
		{1, 1, 1, 1}, {1, 10, 1, 3}, {7, 10, 1.0 / 7, 3}, {13, 3, 0.5, 5},
		{4, 1000, 1, 2}, {3, 2, 1, 1}, {9, 10, 1, 60}, {16, 17, 0.25, 10},
	} {
		what := fmt.Sprintf("SoftmaxCrossEntropy n=%d classes=%d scale=%v spread=%v", c.n, c.classes, c.scale, c.spread)
		logits := randomBuffer(rng, "logits", c.n*c.classes, -c.spread, c.spread)
		labels := make([]int32, c.n)
		for i := range labels {
			row := logits.data()[i*c.classes : (i+1)*c.classes]
			switch i % 3 {
			case 0: // a correct row: the label is the top logit
				top := 0
				for j, v := range row {
					if v > row[top] {
						top = j
					}
				}
				labels[i] = int32(top)
			case 1: // a hopeless row: p[label] ≈ e^−40, so the log is clamped
				labels[i] = int32(rng.IntN(c.classes))
				lowest := row[0]
				for _, v := range row {
					lowest = min(lowest, v)
				}
				if c.classes > 1 {
					row[labels[i]] = lowest - 40
				}
			default:
				labels[i] = int32(rng.IntN(c.classes))
			}
		}
		logits.seal()
		labelsIn := append([]int32(nil), labels...)

		probs := newBuffer("probs", c.n*c.classes).seal()
		dlogits := newBuffer("dlogits", c.n*c.classes).seal()
		wantP, wantD := make([]float64, c.n*c.classes), make([]float64, c.n*c.classes)
		wantLoss, wantCorrect := ref().SoftmaxCrossEntropy(c.n, c.classes, logits.wide(), labels, float64(c.scale), wantP, wantD)
		loss, correct := b.SoftmaxCrossEntropy(c.n, c.classes, logits.data(), labels, c.scale, probs.data(), dlogits.data())

		ok := logits.checkUnchanged(t, what) && probs.checkGuards(t, what) && dlogits.checkGuards(t, what)
		for i := range labels {
			if ok && labels[i] != labelsIn[i] {
				t.Errorf("%s: input labels modified: element %d was %d, now %d", what, i, labelsIn[i], labels[i])
				ok = false
			}
		}
		if ok {
			ok = compare(t, what+" probs", probs.data(), wantP, elementTol, atRowCol(c.classes)) &&
				compare(t, what+" dlogits", dlogits.data(), wantD, elementTol, atRowCol(c.classes))
		}
		// Each row's loss is a difference of logits and a log-sum-exp;
		// float32 rounding of logits of size spread is ~1e-7·spread.
		if limit := float64(c.n) * 1e-5 * (1 + c.spread); ok && !(math.Abs(loss-wantLoss) <= limit) {
			t.Errorf("%s: loss sum %v, want %v (|diff| %.3g > tol %.3g)", what, loss, wantLoss, math.Abs(loss-wantLoss), limit)
			ok = false
		}
		if ok && correct != wantCorrect {
			t.Errorf("%s: correct %d, want %d", what, correct, wantCorrect)
			ok = false
		}
		f.note(t, ok)
	}
}

// TestDropout checks DropoutForward in training (the mask must equal
// kernels.FillDropoutMask exactly, row by row, keyed by each row's sample)
// and at test time in both forms (mask untouched), and DropoutBackward.
func TestDropout(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(1200)
	var f failures
	params := []kernels.DropoutParams{
		{Ratio: 0.5, Seed: 1, Step: 7, Layer: 2},
		{Ratio: 0.3, Inverted: true, Seed: 0x0123456789abcdef, Step: 1 << 33, Layer: 0},
		{Ratio: 0, Inverted: true, Seed: 42, Step: 0, Layer: 5},
		{Ratio: 0.9, Seed: 3, Step: 100, Layer: 1},
	}
	shapes := [][2]int{{1, 1}, {3, 7}, {5, 100}, {2, 1001}, {1, 4}, {4, 50}}
	for pi, base := range params {
		for _, s := range shapes {
			rows, cols := s[0], s[1]
			samples := make([]int64, rows)
			for i := range samples {
				samples[i] = rng.Int64N(1 << 40)
			}
			if rows > 1 {
				samples[1] = 0
			}
			samplesIn := append([]int64(nil), samples...)
			for _, train := range []bool{true, false} {
				d := base
				d.Train = train
				what := fmt.Sprintf("DropoutForward %+v rows=%d cols=%d samples=%v", d, rows, cols, samples)
				x := randomBuffer(rng, "x", rows*cols, -1, 1)
				y := newBuffer("y", rows*cols).seal()
				mask := newBuffer("mask", rows*cols).seal()
				wantY := make([]float64, rows*cols)
				ref().DropoutForward(d, rows, cols, samples, x.wide(), wantY, make([]float64, rows*cols))
				b.DropoutForward(d, rows, cols, samples, x.data(), y.data(), mask.data())
				ok := x.checkUnchanged(t, what) && y.checkGuards(t, what)
				for i := range samples {
					if ok && samples[i] != samplesIn[i] {
						t.Errorf("%s: input samples modified", what)
						ok = false
					}
				}
				if ok && train {
					ok = mask.checkGuards(t, what) && checkMask(t, what, d, rows, cols, samples, mask.data())
				} else if ok {
					ok = mask.checkUnchanged(t, what+" (test mode leaves mask alone)")
				}
				if ok {
					ok = compare(t, what+" y", y.data(), wantY, tolerance{rtol: 1e-6}, atRowCol(cols))
				}
				f.note(t, ok)
			}
		}

		rows, cols := 3, 37
		what := fmt.Sprintf("DropoutBackward params #%d rows=%d cols=%d", pi, rows, cols)
		mask := newBuffer("mask", rows*cols)
		d := base
		d.Train = true
		for i := range rows {
			kernels.FillDropoutMask(d, int64(i*1000+pi), mask.data()[i*cols:(i+1)*cols])
		}
		mask.seal()
		dy := randomBuffer(rng, "dy", rows*cols, -1, 1)
		dx := newBuffer("dx", rows*cols).seal()
		want := make([]float64, rows*cols)
		ref().DropoutBackward(mask.wide(), dy.wide(), want)
		b.DropoutBackward(mask.data(), dy.data(), dx.data())
		f.note(t, mask.checkUnchanged(t, what) && dy.checkUnchanged(t, what) && dx.checkGuards(t, what) &&
			compare(t, what, dx.data(), want, tolerance{rtol: 1e-6}, atRowCol(cols)))
	}
}

// checkMask compares a training mask with FillDropoutMask bit for bit: the
// mask is what makes workers agree, so no tolerance applies.
func checkMask(t *testing.T, what string, d kernels.DropoutParams, rows, cols int, samples []int64, mask []float32) bool {
	t.Helper()
	want := make([]float32, cols)
	bad := 0
	for i := range rows {
		kernels.FillDropoutMask(d, samples[i], want)
		for j, w := range want {
			if got := mask[i*cols+j]; math.Float32bits(got) != math.Float32bits(w) {
				if bad++; bad <= maxReported {
					t.Errorf("%s: mask[%d] (row %d sample %d, unit %d): got %v, want %v", what, i*cols+j, i, samples[i], j, got, w)
				}
			}
		}
	}
	if bad > maxReported {
		t.Errorf("%s: %d of %d mask elements differ", what, bad, rows*cols)
	}
	return bad == 0
}

// TestLRN checks LRNForward (y and scale) and LRNBackward, with odd and
// even window sizes, windows wider than the channels, and α large enough
// for the normalisation to matter.
func TestLRN(t *testing.T, b kernels.Backend[float32]) {
	rng := newRand(1300)
	var f failures
	for _, p := range []kernels.LRNParams{
		{Rows: 1, C: 1, Size: 1, Alpha: 1, Beta: 0.75, K: 1},
		{Rows: 10, C: 16, Size: 5, Alpha: 1e-4, Beta: 0.75, K: 2},
		{Rows: 7, C: 7, Size: 3, Alpha: 1, Beta: 0.75, K: 1},
		{Rows: 5, C: 9, Size: 4, Alpha: 0.5, Beta: 0.5, K: 1.5},
		{Rows: 3, C: 3, Size: 5, Alpha: 2, Beta: 1, K: 1},
		{Rows: 13, C: 32, Size: 5, Alpha: 1, Beta: 0.75, K: 2},
	} {
		n := p.Rows * p.C
		tag := fmt.Sprintf("%+v", p)
		x := randomBuffer(rng, "x", n, -2, 2)
		dy := randomBuffer(rng, "dy", n, -1, 1)

		what := "LRNForward " + tag
		y := newBuffer("y", n).seal()
		scale := newBuffer("scale", n).seal()
		wantY, wantS := make([]float64, n), make([]float64, n)
		ref().LRNForward(p, x.wide(), wantY, wantS)
		b.LRNForward(p, x.data(), y.data(), scale.data())
		f.note(t, x.checkUnchanged(t, what) && y.checkGuards(t, what) && scale.checkGuards(t, what) &&
			compare(t, what+" y", y.data(), wantY, elementTol, atRowCol(p.C)) &&
			compare(t, what+" scale", scale.data(), wantS, elementTol, atRowCol(p.C)))

		// The backward pass gets the reference's forward results, rounded
		// as a float32 forward pass would have stored them.
		what = "LRNBackward " + tag
		yIn, sIn := newBuffer("y", n), newBuffer("scale", n)
		copy(yIn.data(), narrow(wantY))
		copy(sIn.data(), narrow(wantS))
		yIn.seal()
		sIn.seal()
		dx := newBuffer("dx", n).seal()
		want := make([]float64, n)
		ref().LRNBackward(p, x.wide(), yIn.wide(), sIn.wide(), dy.wide(), want)
		b.LRNBackward(p, x.data(), yIn.data(), sIn.data(), dy.data(), dx.data())
		f.note(t, x.checkUnchanged(t, what) && yIn.checkUnchanged(t, what) && sIn.checkUnchanged(t, what) &&
			dy.checkUnchanged(t, what) && dx.checkGuards(t, what) &&
			compare(t, what, dx.data(), want, sumTol(p.Size+1), atRowCol(p.C)))
	}
}
