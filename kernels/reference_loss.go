package kernels

// logProbFloor is log 1e-7: the book's cross_entropy_error adds 1e-7 inside
// the log to avoid log 0; clamping the log-probability there gives the same
// protection without perturbing the loss of confident, correct predictions.
var logProbFloor = logPortable(1e-7)

// SoftmaxCrossEntropy computes, row by row in float64, p = exp(x − max x) /
// Σ exp(x − max x), dlogits = (p − onehot(label))·scale and the loss
// −max(log p[label], log 1e-7), with log p[label] = x[label] − max x −
// log Σ exp(x − max x). A row is correct when its first largest logit is at
// the label.
func (*Reference[T]) SoftmaxCrossEntropy(n, classes int, logits []T, labels []int32, scale T, probs, dlogits []T) (lossSum float64, correct int) {
	for i := range n {
		row := logits[i*classes : (i+1)*classes]
		label := int(labels[i])
		top := 0
		for j, v := range row {
			if v > row[top] {
				top = j
			}
		}
		if top == label {
			correct++
		}
		maxLogit := float64(row[top])
		var sum float64
		for _, v := range row {
			sum += expPortable(float64(v) - maxLogit)
		}
		for j, v := range row {
			p := expPortable(float64(v)-maxLogit) / sum
			probs[i*classes+j] = T(p)
			if j == label {
				p--
			}
			dlogits[i*classes+j] = T(p * float64(scale))
		}
		logProb := float64(row[label]) - maxLogit - logPortable(sum)
		lossSum -= max(logProb, logProbFloor)
	}
	return lossSum, correct
}

// DropoutForward fills each row's mask with FillDropoutMask and multiplies,
// in training; at test time it multiplies by DropoutTestScale.
func (*Reference[T]) DropoutForward(d DropoutParams, rows, cols int, samples []int64, x, y, mask []T) {
	if !d.Train {
		scale := T(DropoutTestScale(d))
		for i := range rows * cols {
			y[i] = x[i] * scale
		}
		return
	}
	for i := range rows {
		m := mask[i*cols : (i+1)*cols]
		FillDropoutMask(d, samples[i], m)
		for j := range cols {
			y[i*cols+j] = x[i*cols+j] * m[j]
		}
	}
}

// DropoutBackward computes dx = dy·mask.
func (*Reference[T]) DropoutBackward(mask, dy, dx []T) {
	mask, dx = mask[:len(dy)], dx[:len(dy)]
	for i, d := range dy {
		dx[i] = d * mask[i]
	}
}

// lrnWindow returns the channels [lo, hi] whose squares enter the sum of
// channel c: Size channels centred on c, one more after than before when
// Size is even (ONNX: c − ⌊(Size−1)/2⌋ … c + ⌈(Size−1)/2⌉), clipped to the
// existing channels.
func lrnWindow(p LRNParams, c int) (lo, hi int) {
	before := (p.Size - 1) / 2
	after := p.Size - 1 - before
	return max(c-before, 0), min(c+after, p.C-1)
}

// LRNForward computes, in float64, scale = K + Alpha/Size·Σ x² over the
// window of each channel and y = x·scale^−Beta.
func (*Reference[T]) LRNForward(p LRNParams, x, y, scale []T) {
	for r := range p.Rows {
		px := x[r*p.C : (r+1)*p.C]
		for c := range p.C {
			lo, hi := lrnWindow(p, c)
			var sq float64
			for i := lo; i <= hi; i++ {
				sq += float64(float64(px[i]) * float64(px[i]))
			}
			s := p.K + float64(p.Alpha/float64(p.Size)*sq)
			scale[r*p.C+c] = T(s)
			y[r*p.C+c] = T(float64(px[c]) * powPortable(s, -p.Beta))
		}
	}
}

// LRNBackward computes, in float64, the derivative of LRNForward:
//
//	dx[j] = dy[j]·scale[j]^−Beta − 2·Alpha·Beta/Size · x[j] · Σ_c dy[c]·y[c]/scale[c]
//
// the sum over the channels c whose window contains j.
func (*Reference[T]) LRNBackward(p LRNParams, x, y, scale, dy, dx []T) {
	before := (p.Size - 1) / 2
	after := p.Size - 1 - before
	coef := 2 * p.Alpha * p.Beta / float64(p.Size)
	for r := range p.Rows {
		base := r * p.C
		for j := range p.C {
			// j is in the window [c−before, c+after] of channel c exactly
			// when c is in [j−after, j+before].
			var sum float64
			for c := max(j-after, 0); c <= min(j+before, p.C-1); c++ {
				sum += float64(dy[base+c]) * float64(y[base+c]) / float64(scale[base+c])
			}
			s := float64(scale[base+j])
			dx[base+j] = T(float64(float64(dy[base+j])*powPortable(s, -p.Beta)) - float64(coef*float64(x[base+j])*sum))
		}
	}
}
