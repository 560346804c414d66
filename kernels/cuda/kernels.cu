// CUDA C kernels of the dpcnn CUDA backend, compiled at run time by NVRTC
// (see compile.go). Layout and semantics are those of package kernels: NHWC
// activations, HWIO filters, row-major matrices; each kernel's comment names
// the Backend method whose CPU version it reproduces.
//
// Rules kept by every kernel:
//  - extern "C" (unmangled names), no #include (NVRTC has no system headers);
//  - grid-stride loops over 64-bit indices, so any grid size is correct;
//  - no atomics: backward passes gather (each output element sums, in a
//    fixed order, everything that contributes to it), so results are
//    deterministic, and the order is the CPU's, so most results are equal to
//    the CPU's bit for bit;
//  - arithmetic the CPU does in float64 is done in double here, and the
//    module is compiled with --fmad=false so no multiply-add is fused where
//    the CPU rounds twice.

typedef long long i64;
typedef unsigned int u32;

#define GRID_STRIDE(i, n) \
	for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// BEGIN PHILOX (also compiled as plain C by the CPU-side test)
// philox4x32_10 is package philox's Block: ten rounds of Philox4x32 on the
// counter c with the key (k0, k1), in place.
__device__ void philox4x32_10(u32 k0, u32 k1, u32 c[4])
{
	const u32 m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
	const u32 w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
	u32 c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
	for (int r = 0; r < 10; r++) {
		u32 hi0 = __umulhi(m0, c0), lo0 = m0 * c0;
		u32 hi1 = __umulhi(m1, c2), lo1 = m1 * c2;
		u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
		c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
		k0 += w0;
		k1 += w1;
	}
	c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
}

// dropout_unit is kernels.FillDropoutMask for one unit: the multiplier of a
// unit whose stream element is u (keep when its 24-bit uniform, exactly
// representable in float, is at least ratio).
__device__ float dropout_unit(u32 u, float ratio, float keep)
{
	float uniform = (float)(u >> 8) * (1.0f / 16777216.0f);
	return uniform >= ratio ? keep : 0.0f;
}
// END PHILOX

// dp_fill sets n floats to v.
extern "C" __global__ void dp_fill(float *x, i64 n, float v)
{
	GRID_STRIDE(i, n) { x[i] = v; }
}

// dp_scale_matrix computes C = beta·C on an m×n matrix of row stride ldc,
// without reading C when beta is 0 (Gemm with alpha = 0 or k = 0).
extern "C" __global__ void dp_scale_matrix(float *c, i64 m, i64 n, i64 ldc, float beta)
{
	GRID_STRIDE(i, m * n)
	{
		i64 at = (i / n) * ldc + i % n;
		c[at] = beta == 0.0f ? 0.0f : beta * c[at];
	}
}

// dp_im2col is Im2Col: col[row, (kh·KW + kw)·C + c] for row = (n·OH + p)·OW
// + q, zero where the tap falls on padding.
extern "C" __global__ void dp_im2col(const float *x, float *col, i64 N, i64 H, i64 W, i64 C,
	i64 KH, i64 KW, i64 stride, i64 pad, i64 OH, i64 OW)
{
	i64 K = KH * KW * C;
	GRID_STRIDE(i, N * OH * OW * K)
	{
		i64 row = i / K, k = i % K;
		i64 c = k % C, kw = (k / C) % KW, kh = k / (C * KW);
		i64 q = row % OW, p = (row / OW) % OH, n = row / (OW * OH);
		i64 ih = p * stride - pad + kh, iw = q * stride - pad + kw;
		float v = 0.0f;
		if (ih >= 0 && ih < H && iw >= 0 && iw < W)
			v = x[((n * H + ih) * W + iw) * C + c];
		col[i] = v;
	}
}

// window_range gives the outputs [lo, hi] along one axis whose window of
// size taps (stride, pad) covers input coordinate i.
__device__ void window_range(i64 i, i64 taps, i64 stride, i64 pad, i64 outSize, i64 *lo, i64 *hi)
{
	i64 first = i + pad - taps + 1; // the lowest o·stride that still reaches i
	*lo = first <= 0 ? 0 : (first + stride - 1) / stride;
	i64 last = (i + pad) / stride;
	*hi = last < outSize - 1 ? last : outSize - 1;
}

// dp_col2im is Col2Im in gather form: each dx element sums the patch
// entries read from it, in increasing patch-row order (the CPU's order).
extern "C" __global__ void dp_col2im(const float *col, float *dx, i64 N, i64 H, i64 W, i64 C,
	i64 KH, i64 KW, i64 stride, i64 pad, i64 OH, i64 OW)
{
	i64 K = KH * KW * C;
	GRID_STRIDE(i, N * H * W * C)
	{
		i64 c = i % C, iw = (i / C) % W, ih = (i / (C * W)) % H, n = i / (C * W * H);
		i64 p0, p1, q0, q1;
		window_range(ih, KH, stride, pad, OH, &p0, &p1);
		window_range(iw, KW, stride, pad, OW, &q0, &q1);
		float sum = 0.0f;
		for (i64 p = p0; p <= p1; p++) {
			i64 kh = ih + pad - p * stride;
			for (i64 q = q0; q <= q1; q++) {
				i64 kw = iw + pad - q * stride;
				sum += col[((n * OH + p) * OW + q) * K + (kh * KW + kw) * C + c];
			}
		}
		dx[i] = sum;
	}
}

// dp_add_bias is AddBias: y[r, j] += bias[j].
extern "C" __global__ void dp_add_bias(float *y, const float *bias, i64 rows, i64 cols)
{
	GRID_STRIDE(i, rows * cols) { y[i] += bias[i % cols]; }
}

// dp_add_bias_relu is ConvForwardReLU's epilogue: y = max(y + bias[j],
// +0) (NaN becomes +0, as on the CPU).
extern "C" __global__ void dp_add_bias_relu(float *y, const float *bias, i64 rows, i64 cols)
{
	GRID_STRIDE(i, rows * cols)
	{
		float v = y[i] + bias[i % cols];
		y[i] = v > 0.0f ? v : 0.0f;
	}
}

// dp_maxpool_fwd is MaxPoolForward: the first cell of greatest value of
// each window (padding skipped), and its index into x.
extern "C" __global__ void dp_maxpool_fwd(const float *x, float *y, int *argmax, i64 N, i64 H, i64 W, i64 C,
	i64 size, i64 stride, i64 pad, i64 OH, i64 OW)
{
	GRID_STRIDE(i, N * OH * OW * C)
	{
		i64 c = i % C, q = (i / C) % OW, p = (i / (C * OW)) % OH, n = i / (C * OW * OH);
		i64 h0 = p * stride - pad, w0 = q * stride - pad;
		i64 h1 = h0 + size < H ? h0 + size : H, w1 = w0 + size < W ? w0 + size : W;
		h0 = h0 < 0 ? 0 : h0;
		w0 = w0 < 0 ? 0 : w0;
		i64 best = ((n * H + h0) * W + w0) * C + c;
		float v = x[best];
		for (i64 ih = h0; ih < h1; ih++) {
			for (i64 iw = w0; iw < w1; iw++) {
				i64 at = ((n * H + ih) * W + iw) * C + c;
				if (x[at] > v) {
					v = x[at];
					best = at;
				}
			}
		}
		y[i] = v;
		argmax[i] = (int)best;
	}
}

// dp_maxpool_bwd is MaxPoolBackward in gather form: each dx element sums
// the dy of the windows that chose it, in output order.
extern "C" __global__ void dp_maxpool_bwd(const float *dy, const int *argmax, float *dx, i64 N, i64 H, i64 W, i64 C,
	i64 size, i64 stride, i64 pad, i64 OH, i64 OW)
{
	GRID_STRIDE(i, N * H * W * C)
	{
		i64 c = i % C, iw = (i / C) % W, ih = (i / (C * W)) % H, n = i / (C * W * H);
		i64 p0, p1, q0, q1;
		window_range(ih, size, stride, pad, OH, &p0, &p1);
		window_range(iw, size, stride, pad, OW, &q0, &q1);
		float sum = 0.0f;
		for (i64 p = p0; p <= p1; p++) {
			for (i64 q = q0; q <= q1; q++) {
				i64 out = ((n * OH + p) * OW + q) * C + c;
				if ((i64)argmax[out] == i)
					sum += dy[out];
			}
		}
		dx[i] = sum;
	}
}

// dp_avgpool_fwd is AvgPoolForward: the float sum of the window's cells
// inside the image, in row-major order, divided by their count.
extern "C" __global__ void dp_avgpool_fwd(const float *x, float *y, i64 N, i64 H, i64 W, i64 C,
	i64 size, i64 stride, i64 pad, i64 OH, i64 OW)
{
	GRID_STRIDE(i, N * OH * OW * C)
	{
		i64 c = i % C, q = (i / C) % OW, p = (i / (C * OW)) % OH, n = i / (C * OW * OH);
		i64 h0 = p * stride - pad, w0 = q * stride - pad;
		i64 h1 = h0 + size < H ? h0 + size : H, w1 = w0 + size < W ? w0 + size : W;
		h0 = h0 < 0 ? 0 : h0;
		w0 = w0 < 0 ? 0 : w0;
		float sum = 0.0f;
		for (i64 ih = h0; ih < h1; ih++)
			for (i64 iw = w0; iw < w1; iw++)
				sum += x[((n * H + ih) * W + iw) * C + c];
		y[i] = sum / (float)((h1 - h0) * (w1 - w0));
	}
}

// dp_avgpool_bwd is AvgPoolBackward in gather form: each dx element sums
// dy/count of the windows that hold it, in output order.
extern "C" __global__ void dp_avgpool_bwd(const float *dy, float *dx, i64 N, i64 H, i64 W, i64 C,
	i64 size, i64 stride, i64 pad, i64 OH, i64 OW)
{
	GRID_STRIDE(i, N * H * W * C)
	{
		i64 c = i % C, iw = (i / C) % W, ih = (i / (C * W)) % H, n = i / (C * W * H);
		i64 p0, p1, q0, q1;
		window_range(ih, size, stride, pad, OH, &p0, &p1);
		window_range(iw, size, stride, pad, OW, &q0, &q1);
		float sum = 0.0f;
		for (i64 p = p0; p <= p1; p++) {
			i64 h0 = p * stride - pad, h1 = h0 + size < H ? h0 + size : H;
			h0 = h0 < 0 ? 0 : h0;
			for (i64 q = q0; q <= q1; q++) {
				i64 w0 = q * stride - pad, w1 = w0 + size < W ? w0 + size : W;
				w0 = w0 < 0 ? 0 : w0;
				float count = (float)((h1 - h0) * (w1 - w0));
				sum += dy[((n * OH + p) * OW + q) * C + c] / count;
			}
		}
		dx[i] = sum;
	}
}

// dp_relu_fwd is ReLUForward.
extern "C" __global__ void dp_relu_fwd(const float *x, float *y, i64 n)
{
	GRID_STRIDE(i, n)
	{
		float v = x[i];
		y[i] = v > 0.0f ? v : 0.0f;
	}
}

// dp_relu_bwd is ReLUBackward: dx = dy where y > 0, else 0.
extern "C" __global__ void dp_relu_bwd(const float *y, const float *dy, float *dx, i64 n)
{
	GRID_STRIDE(i, n) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
}

// dp_sigmoid_fwd is SigmoidForward, in double like the CPU.
extern "C" __global__ void dp_sigmoid_fwd(const float *x, float *y, i64 n)
{
	GRID_STRIDE(i, n) { y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i]))); }
}

// dp_sigmoid_bwd is SigmoidBackward: dx = dy·y·(1−y) in double.
extern "C" __global__ void dp_sigmoid_bwd(const float *y, const float *dy, float *dx, i64 n)
{
	GRID_STRIDE(i, n)
	{
		double s = (double)y[i];
		dx[i] = (float)((double)dy[i] * s * (1.0 - s));
	}
}

// dp_scale is out = a·s (dropout at test time).
extern "C" __global__ void dp_scale(const float *a, float *out, i64 n, float s)
{
	GRID_STRIDE(i, n) { out[i] = a[i] * s; }
}

// dp_mul is out = a·b (DropoutBackward: dx = dy·mask).
extern "C" __global__ void dp_mul(const float *a, const float *b, float *out, i64 n)
{
	GRID_STRIDE(i, n) { out[i] = a[i] * b[i]; }
}

// dp_dropout_fwd is DropoutForward in training: the mask of row r is drawn
// from the stream keyed by (seed, step, layer, samples[r]), four units per
// Philox block, exactly as kernels.FillDropoutMask draws it; y = x·mask.
extern "C" __global__ void dp_dropout_fwd(const float *x, float *y, float *mask, const i64 *samples,
	i64 rows, i64 cols, u32 key0, u32 key1, u32 step, u32 layer, float ratio, float keep)
{
	i64 blocks = (cols + 3) / 4;
	GRID_STRIDE(i, rows * blocks)
	{
		i64 r = i / blocks, j = i % blocks;
		u32 c[4] = {(u32)j, step, layer, (u32)samples[r]};
		philox4x32_10(key0, key1, c);
		for (int lane = 0; lane < 4; lane++) {
			i64 col = 4 * j + lane;
			if (col >= cols)
				break;
			float m = dropout_unit(c[lane], ratio, keep);
			mask[r * cols + col] = m;
			y[r * cols + col] = x[r * cols + col] * m;
		}
	}
}

// dp_lrn_fwd is LRNForward: scale = K + alphaOverSize·Σx² over the channel
// window [c−before, c+after], y = x·scale^−beta, in double.
extern "C" __global__ void dp_lrn_fwd(const float *x, float *y, float *scale, i64 rows, i64 C,
	i64 before, i64 after, double k, double alphaOverSize, double beta)
{
	GRID_STRIDE(i, rows * C)
	{
		i64 c = i % C, base = i - c;
		i64 lo = c - before < 0 ? 0 : c - before, hi = c + after < C - 1 ? c + after : C - 1;
		double sq = 0.0;
		for (i64 j = lo; j <= hi; j++) {
			double v = (double)x[base + j];
			sq += v * v;
		}
		double s = k + alphaOverSize * sq;
		scale[i] = (float)s;
		y[i] = (float)((double)x[i] * pow(s, -beta));
	}
}

// dp_lrn_bwd is LRNBackward: dx[j] = dy[j]·scale[j]^−beta − coef·x[j]·Σ
// dy[c]·y[c]/scale[c] over the channels c whose window holds j.
extern "C" __global__ void dp_lrn_bwd(const float *x, const float *y, const float *scale, const float *dy, float *dx,
	i64 rows, i64 C, i64 before, i64 after, double beta, double coef)
{
	GRID_STRIDE(i, rows * C)
	{
		i64 j = i % C, base = i - j;
		i64 lo = j - after < 0 ? 0 : j - after, hi = j + before < C - 1 ? j + before : C - 1;
		double sum = 0.0;
		for (i64 c = lo; c <= hi; c++)
			sum += (double)dy[base + c] * (double)y[base + c] / (double)scale[base + c];
		double s = (double)scale[i];
		dx[i] = (float)((double)dy[i] * pow(s, -beta) - coef * (double)x[i] * sum);
	}
}

// Batch normalisation, as package kernels' reference computes it
// (reference_norm.go), in double: the sums over rows are one thread per
// channel, adding the rows in order (warps read adjacent channels of a row,
// so the loads coalesce); y and dx, elementwise once those sums are known,
// are one thread per element.

// dp_bn_fwd_stats is BatchNormForwardTrain's statistics: the mean and the
// biased variance v = Σ(x−mean)²/rows in two passes, mean[c] and invStd[c]
// = 1/√(v+eps) as floats, and, when meanStat and varStat are not null,
// statWeight·mean and statWeight·Σ(x−mean)²/(rows−1) (v when rows is 1).
extern "C" __global__ void dp_bn_fwd_stats(const float *x, float *mean, float *invStd, float *meanStat, float *varStat,
	i64 rows, i64 C, double eps, double statWeight)
{
	GRID_STRIDE(c, C)
	{
		double sum = 0.0;
		for (i64 r = 0; r < rows; r++)
			sum += (double)x[r * C + c];
		double m = sum / (double)rows;
		double squares = 0.0;
		for (i64 r = 0; r < rows; r++) {
			double d = (double)x[r * C + c] - m;
			squares += d * d;
		}
		double v = squares / (double)rows;
		mean[c] = (float)m;
		invStd[c] = (float)(1.0 / sqrt(v + eps));
		if (meanStat)
			meanStat[c] = (float)(statWeight * m);
		if (varStat)
			varStat[c] = (float)(statWeight * (rows > 1 ? squares / (double)(rows - 1) : v));
	}
}

// dp_bn_fwd_train is BatchNormForwardTrain's output: y = gamma·(x−mean)·invStd
// + beta from the float mean and invStd.
extern "C" __global__ void dp_bn_fwd_train(const float *x, const float *gamma, const float *beta, const float *mean,
	const float *invStd, float *y, i64 rows, i64 C)
{
	GRID_STRIDE(i, rows * C)
	{
		i64 c = i % C;
		y[i] = (float)((double)gamma[c] * ((double)x[i] - (double)mean[c]) * (double)invStd[c] + (double)beta[c]);
	}
}

// dp_bn_fwd_infer is BatchNormForwardInfer: y = gamma·(x−runMean)/√(runVar+eps)
// + beta.
extern "C" __global__ void dp_bn_fwd_infer(const float *x, const float *gamma, const float *beta, const float *runMean,
	const float *runVar, float *y, i64 rows, i64 C, double eps)
{
	GRID_STRIDE(i, rows * C)
	{
		i64 c = i % C;
		double s = sqrt((double)runVar[c] + eps);
		y[i] = (float)((double)gamma[c] * ((double)x[i] - (double)runMean[c]) / s + (double)beta[c]);
	}
}

// dp_bn_bwd_sums is BatchNormBackward's sums: dbeta = Σ dy and dgamma =
// Σ dy·x̂ with x̂ = (x−mean)·invStd, each rounded to float.
extern "C" __global__ void dp_bn_bwd_sums(const float *x, const float *mean, const float *invStd, const float *dy,
	float *dgamma, float *dbeta, i64 rows, i64 C)
{
	GRID_STRIDE(c, C)
	{
		double m = (double)mean[c], inv = (double)invStd[c];
		double sumDy = 0.0, sumDyXhat = 0.0;
		for (i64 r = 0; r < rows; r++) {
			double d = (double)dy[r * C + c];
			sumDy += d;
			sumDyXhat += d * (((double)x[r * C + c] - m) * inv);
		}
		dbeta[c] = (float)sumDy;
		dgamma[c] = (float)sumDyXhat;
	}
}

// dp_bn_bwd_dx is BatchNormBackward's input gradient: dx =
// gamma·invStd·((dy − dbeta/rows) − x̂·dgamma/rows) from the float dbeta
// and dgamma.
extern "C" __global__ void dp_bn_bwd_dx(const float *x, const float *gamma, const float *mean, const float *invStd,
	const float *dy, const float *dgamma, const float *dbeta, float *dx, i64 rows, i64 C)
{
	GRID_STRIDE(i, rows * C)
	{
		i64 c = i % C;
		double inv = (double)invStd[c];
		double k = (double)gamma[c] * inv;
		double meanDy = (double)dbeta[c] / (double)rows, meanDyXhat = (double)dgamma[c] / (double)rows;
		double xhat = ((double)x[i] - (double)mean[c]) * inv;
		dx[i] = (float)(k * ((double)dy[i] - meanDy - xhat * meanDyXhat));
	}
}

// dp_softmax_xent is SoftmaxCrossEntropy for one row per thread, in double:
// probabilities, (p − onehot)·scale, the row's loss −max(log p[label],
// logFloor) and whether its first largest logit is the label. The host adds
// the rows' losses in row order.
extern "C" __global__ void dp_softmax_xent(const float *logits, const int *labels, float *probs, float *dlogits,
	double *rowLoss, int *rowCorrect, i64 n, i64 classes, double scale, double logFloor)
{
	GRID_STRIDE(i, n)
	{
		const float *row = logits + i * classes;
		i64 label = labels[i];
		i64 top = 0;
		for (i64 j = 1; j < classes; j++)
			if (row[j] > row[top])
				top = j;
		rowCorrect[i] = top == label ? 1 : 0;
		double maxLogit = (double)row[top];
		double sum = 0.0;
		for (i64 j = 0; j < classes; j++)
			sum += exp((double)row[j] - maxLogit);
		for (i64 j = 0; j < classes; j++) {
			double p = exp((double)row[j] - maxLogit) / sum;
			probs[i * classes + j] = (float)p;
			if (j == label)
				p -= 1.0;
			dlogits[i * classes + j] = (float)(p * scale);
		}
		double logProb = (double)row[label] - maxLogit - log(sum);
		rowLoss[i] = -(logProb > logFloor ? logProb : logFloor);
	}
}

// dp_sgd is SGDUpdate: p −= lr·g, in double.
extern "C" __global__ void dp_sgd(float *p, const float *g, i64 n, double lr)
{
	GRID_STRIDE(i, n) { p[i] = (float)((double)p[i] - lr * (double)g[i]); }
}

// dp_momentum is MomentumUpdate: v = μ·v − lr·g; p += v.
extern "C" __global__ void dp_momentum(float *p, const float *g, float *v, i64 n, double lr, double mu)
{
	GRID_STRIDE(i, n)
	{
		v[i] = (float)(mu * (double)v[i] - lr * (double)g[i]);
		p[i] = (float)((double)p[i] + (double)v[i]);
	}
}

// dp_adagrad is AdaGradUpdate: h += g²; p −= lr·g/(√h + 1e-7).
extern "C" __global__ void dp_adagrad(float *p, const float *g, float *h, i64 n, double lr)
{
	GRID_STRIDE(i, n)
	{
		double gi = (double)g[i];
		h[i] = (float)((double)h[i] + gi * gi);
		p[i] = (float)((double)p[i] - lr * gi / (sqrt((double)h[i]) + 1e-7));
	}
}

// dp_adam is AdamUpdate with the bias-corrected rate lrT computed on the
// host: m += (1−β1)(g−m); v += (1−β2)(g²−v); p −= lrT·m/(√v + eps).
extern "C" __global__ void dp_adam(float *p, const float *g, float *m, float *v, i64 n,
	double lrT, double oneMinusBeta1, double oneMinusBeta2, double eps)
{
	GRID_STRIDE(i, n)
	{
		double gi = (double)g[i];
		m[i] = (float)((double)m[i] + oneMinusBeta1 * (gi - (double)m[i]));
		v[i] = (float)((double)v[i] + oneMinusBeta2 * (gi * gi - (double)v[i]));
		p[i] = (float)((double)p[i] - lrT * (double)m[i] / (sqrt((double)v[i]) + eps));
	}
}
