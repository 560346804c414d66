package kernels

// SoftmaxCrossEntropy computes, row by row in float64, p = exp(x − max x) /
// Σ exp(x − max x), dlogits = (p − onehot(label))·scale and the loss
// −max(log p[label], log 1e-7). A row is correct when its first largest
// logit is at the label. Rows are few (a batch) and short (the classes), so
// this runs on the calling goroutine; the loss is summed in row order.
func (c *CPU) SoftmaxCrossEntropy(n, classes int, logits []float32, labels []int32, scale float32, probs, dlogits []float32) (lossSum float64, correct int) {
	cpuNeed("softmax logits", logits, n*classes)
	cpuNeed("softmax probs", probs, n*classes)
	cpuNeed("softmax dlogits", dlogits, n*classes)
	cpuNeedIndex("softmax labels", labels, n)
	for i := range n {
		row := logits[i*classes : (i+1)*classes]
		label := int(labels[i])
		if label < 0 || label >= classes {
			panic(cpuBadLabel(i, label, classes))
		}
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
		p, d := probs[i*classes:(i+1)*classes], dlogits[i*classes:(i+1)*classes]
		for j, v := range row {
			pj := expPortable(float64(v)-maxLogit) / sum
			p[j] = float32(pj)
			if j == label {
				pj--
			}
			d[j] = float32(pj * float64(scale))
		}
		logProb := float64(row[label]) - maxLogit - logPortable(sum)
		lossSum -= max(logProb, logProbFloor)
	}
	return lossSum, correct
}
