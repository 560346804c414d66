package kernels_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// cpuBNParams are batch normalisations with several channel blocks and row
// spans: a conv layer's batch (split over both), an affine layer's, a
// partial channel block, one row.
var cpuBNParams = []kernels.BatchNormParams{
	{Rows: 13 * 14 * 14, C: 32, Eps: 1e-5, StatWeight: 0.1},
	{Rows: 3 * 28 * 28, C: 16, Eps: 1e-5, StatWeight: 0.1},
	{Rows: 37, C: 1029, Eps: 1e-3, StatWeight: 1},
	{Rows: 333, C: 17, Eps: 1e-5, StatWeight: 0.01},
	{Rows: 1, C: 9, Eps: 1e-5, StatWeight: 0.1},
}

// cpuBNInputs returns x, gamma, beta, dy and positive running variances
// for p. Every value is an integer times a power of two drawn with integer
// arithmetic only, so they are the same bits on every processor (a float
// expression such as lo + (hi−lo)·u might be fused on one and not another).
func cpuBNInputs(seed uint64, p kernels.BatchNormParams) (x, gamma, beta, dy, runVar []float32) {
	rng := rand.New(rand.NewPCG(seed, 99))
	draw := func(n int, bits uint, scale float32) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(int32(rng.Uint32()>>(32-bits))-int32(1)<<(bits-1)) * scale
		}
		return s
	}
	x = draw(p.Rows*p.C, 20, 0x1p-17) // [−4, 4)
	for i := range x {
		x[i] += float32(i%p.C%5) * 0.5 // exact: channels of different means
	}
	gamma, beta, dy = draw(p.C, 16, 0x1p-14), draw(p.C, 16, 0x1p-15), draw(p.Rows*p.C, 16, 0x1p-15)
	runVar = draw(p.C, 16, 0x1p-14)
	for i, v := range runVar {
		runVar[i] = float32(math.Abs(float64(v))) + 0.25
	}
	return x, gamma, beta, dy, runVar
}

// cpuBNOutputs runs every batch normalisation primitive on b and returns
// its outputs by name.
func cpuBNOutputs(b kernels.Backend[float32], seed uint64, p kernels.BatchNormParams) map[string][]float32 {
	x, gamma, beta, dy, runVar := cpuBNInputs(seed, p)
	n, c := p.Rows*p.C, p.C
	out := map[string][]float32{}
	alloc := func(name string, k int) []float32 {
		out[name] = make([]float32, k)
		return out[name]
	}
	y, mean, invStd := alloc("train y", n), alloc("mean", c), alloc("invStd", c)
	b.BatchNormForwardTrain(p, x, gamma, beta, y, mean, invStd, alloc("meanStat", c), alloc("varStat", c))
	b.BatchNormForwardTrain(p, x, gamma, beta, alloc("train y without statistics", n), alloc("mean without statistics", c), alloc("invStd without statistics", c), nil, nil)
	b.BatchNormForwardInfer(p, x, gamma, beta, mean, runVar, alloc("infer y", n))
	b.BatchNormBackward(p, x, gamma, mean, invStd, dy, alloc("dx", n), alloc("dgamma", c), alloc("dbeta", c))
	b.BatchNormBackward(p, x, gamma, mean, invStd, dy, nil, alloc("dgamma without dx", c), alloc("dbeta without dx", c))
	return out
}

// TestCPUBatchNormMatchesReference checks that the CPU backend's batch
// normalisation gives the float32 reference's bits, on any number of
// threads.
func TestCPUBatchNormMatchesReference(t *testing.T) {
	ref := kernels.NewReference[float32]()
	for pi, p := range cpuBNParams {
		want := cpuBNOutputs(ref, uint64(pi), p)
		for _, threads := range cpuThreadCounts {
			c := kernels.NewCPU(threads)
			got := cpuBNOutputs(c, uint64(pi), p)
			c.Close()
			for name, w := range want {
				cpuSameBits(t, fmt.Sprintf("%+v, %d threads: %s", p, threads, name), got[name], w)
			}
		}
	}
}

// cpuBNGolden is the SHA-256 of every output of cpuBNOutputs for
// cpuBNParams, computed on amd64: the same bits must come out on every
// processor and build (arm64, where the compiler fuses the multiply-adds
// that are not rounded explicitly, and -tags noasm).
const cpuBNGolden = "51ff4f09e4b891893fe96ece0afcd1d4bb024acd68d0a70ecdb43c737c8a9b60"

func TestCPUBatchNormGoldenBits(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	h := sha256.New()
	for pi, p := range cpuBNParams {
		out := cpuBNOutputs(c, uint64(pi), p)
		for _, name := range []string{"train y", "mean", "invStd", "meanStat", "varStat", "infer y", "dx", "dgamma", "dbeta"} {
			for _, v := range out[name] {
				h.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(v)))
			}
		}
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != cpuBNGolden {
		t.Errorf("batch normalisation outputs hash to %s, want %s (amd64's)", got, cpuBNGolden)
	}
}
