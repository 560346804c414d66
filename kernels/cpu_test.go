package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/kernels/kernelstest"
)

func TestCPUConformance(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	kernelstest.TestBackend(t, c)
}

// TestCPUConformanceOneThread runs the suite with no helper threads, the
// path every small call takes.
func TestCPUConformanceOneThread(t *testing.T) {
	if testing.Short() {
		t.Skip("the two-thread run covers the same kernels")
	}
	c := kernels.NewCPU(1)
	defer c.Close()
	kernelstest.TestBackend(t, c)
}

// cpuThreadCounts are the thread counts whose results must agree bit for
// bit: one, the machine's usual even counts, and odd ones that leave some
// threads with more items than others.
var cpuThreadCounts = []int{1, 2, 3, 7}

// cpuDeterminismGeoms have many blocks and gradient chunks: the first
// layers of the deep network with odd batches, a geometry whose chunks hold
// several blocks, a strided one and a direct 1×1 one.
var cpuDeterminismGeoms = []kernels.ConvGeom{
	{N: 37, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 9, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 41, H: 14, W: 14, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 70, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
	{N: 23, H: 13, W: 11, C: 8, OC: 12, KH: 5, KW: 3, Stride: 2, Pad: 2},
	{N: 33, H: 9, W: 9, C: 32, OC: 24, KH: 1, KW: 1, Stride: 1, Pad: 0},
}

func cpuRandom(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*rng.Float64() - 1)
	}
	return s
}

// cpuResults runs every primitive whose work is split across threads and
// returns a copy of each output by name (copies: some buffers are reused by
// the next primitive).
func cpuResults(threads int) map[string][]float32 {
	c := kernels.NewCPU(threads)
	defer c.Close()
	out := map[string][]float32{}
	keep := func(name string, s []float32) {
		if _, dup := out[name]; dup {
			panic("cpuResults: two outputs named " + name)
		}
		out[name] = slices.Clone(s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for gi, g := range cpuDeterminismGeoms {
		x, w, bias := cpuRandom(rng, g.InLen()), cpuRandom(rng, g.FilterLen()), cpuRandom(rng, g.OC)
		dy := cpuRandom(rng, g.OutLen())
		y, dx := make([]float32, g.OutLen()), make([]float32, g.InLen())
		dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
		c.ConvForward(g, x, w, bias, y)
		yReLU := make([]float32, g.OutLen())
		c.ConvForwardReLU(g, x, w, bias, yReLU)
		c.ConvBackwardData(g, dy, w, dx)
		c.ConvBackwardFilter(g, x, dy, dw, db)
		for name, s := range map[string][]float32{"y": y, "yReLU": yReLU, "dx": dx, "dw": dw, "db": db} {
			keep(fmt.Sprintf("conv%d %+v %s", gi, g, name), s)
		}
	}

	const n, in, outF = 203, 300, 70
	x, w, bias, dy := cpuRandom(rng, n*in), cpuRandom(rng, in*outF), cpuRandom(rng, outF), cpuRandom(rng, n*outF)
	y, dx, dw, db := make([]float32, n*outF), make([]float32, n*in), make([]float32, in*outF), make([]float32, outF)
	c.AffineForward(n, in, outF, x, w, bias, y)
	c.AffineBackward(n, in, outF, x, w, dy, dx, dw, db)
	keep("affine y", y)
	keep("affine dx", dx)
	keep("affine dw", dw)
	keep("affine db", db)

	for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		const m, nn, k = 150, 90, 130
		a, b := cpuRandom(rng, m*k), cpuRandom(rng, k*nn)
		cc := cpuRandom(rng, m*nn)
		lda, ldb := k, nn // row strides of A (m×k) and B (k×n), or of their transposes
		if tr[0] {
			lda = m
		}
		if tr[1] {
			ldb = k
		}
		c.Gemm(tr[0], tr[1], m, nn, k, 0.5, a, lda, b, ldb, 0.25, cc, nn)
		keep(fmt.Sprintf("gemm %v", tr), cc)
	}

	pg := kernels.PoolGeom{N: 57, H: 14, W: 14, C: 32, Size: 3, Stride: 2, Pad: 1}
	px, pdy := cpuRandom(rng, pg.InLen()), cpuRandom(rng, pg.OutLen())
	py, pdx := make([]float32, pg.OutLen()), make([]float32, pg.InLen())
	arg := make([]int32, pg.OutLen())
	c.MaxPoolForward(pg, px, py, arg)
	keep("maxpool y", py)
	keep("maxpool argmax", cpuIndexBits(arg))
	c.MaxPoolBackward(pg, pdy, arg, pdx)
	keep("maxpool dx", pdx)
	c.AvgPoolForward(pg, px, py)
	keep("avgpool y", py)
	c.AvgPoolBackward(pg, pdy, pdx)
	keep("avgpool dx", pdx)
	return out
}

// cpuIndexBits carries indices as the bits of float32s, for comparison
// with the other outputs.
func cpuIndexBits(idx []int32) []float32 {
	s := make([]float32, len(idx))
	for i, v := range idx {
		s[i] = math.Float32frombits(uint32(v))
	}
	return s
}

// TestCPUConvMatchesReference checks, against the float64 reference,
// geometries larger than the conformance suite's: blocks of several samples,
// gradient chunks of several blocks (whose partial sums accumulate across
// multiplies), and a final partial block and chunk.
func TestCPUConvMatchesReference(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	ref := kernels.NewReference[float64]()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, g := range []kernels.ConvGeom{
		{N: 41, H: 8, W: 8, C: 128, OC: 3, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 37, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 9, H: 13, W: 11, C: 8, OC: 12, KH: 5, KW: 3, Stride: 2, Pad: 2},
		{N: 11, H: 9, W: 9, C: 32, OC: 24, KH: 1, KW: 1, Stride: 1, Pad: 0},
		// The fused filter-gradient path (K and the floats of a filter row
		// whole 12-row tiles, OC whole slivers): pad 2 like conv4, k blocks
		// that end inside an output row, chunks of several blocks, a stride of 2 with
		// odd sizes and OC = 48 (a wide and a narrow sliver).
		{N: 7, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 2},
		{N: 5, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 70, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 6, H: 9, W: 7, C: 4, OC: 48, KH: 3, KW: 3, Stride: 2, Pad: 1},
		// The conv1 kernels (one channel, 16 3×3 filters, stride 1): no
		// padding and a pad of 2, output widths that leave 0–3 pixels
		// after the 4-pixel steps.
		{N: 13, H: 9, W: 7, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 0},
		{N: 5, H: 6, W: 10, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 2},
		{N: 3, H: 3, W: 3, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 0},
		{N: 2, H: 5, W: 9, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 0},
		// 16 channels into one filter: its input gradient is a forward
		// convolution of one channel into 16, which takes conv1's kernels.
		{N: 4, H: 7, W: 6, C: 16, OC: 1, KH: 3, KW: 3, Stride: 1, Pad: 1},
	} {
		x, w, bias, dy := cpuRandom(rng, g.InLen()), cpuRandom(rng, g.FilterLen()), cpuRandom(rng, g.OC), cpuRandom(rng, g.OutLen())
		y, dx := make([]float32, g.OutLen()), make([]float32, g.InLen())
		dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
		c.ConvForward(g, x, w, bias, y)
		c.ConvBackwardData(g, dy, w, dx)
		c.ConvBackwardFilter(g, x, dy, dw, db)

		wy, wdx := make([]float64, g.OutLen()), make([]float64, g.InLen())
		wdw, wdb := make([]float64, g.FilterLen()), make([]float64, g.OC)
		ref.ConvForward(g, cpuWiden(x), cpuWiden(w), cpuWiden(bias), wy)
		ref.ConvBackwardData(g, cpuWiden(dy), cpuWiden(w), wdx)
		ref.ConvBackwardFilter(g, cpuWiden(x), cpuWiden(dy), wdw, wdb)

		pixels := g.ColRows()
		for _, cmp := range []struct {
			name  string
			got   []float32
			want  []float64
			terms int // products summed into one element
		}{
			{"y", y, wy, g.ColCols() + 1},
			{"dx", dx, wdx, g.KH * g.KW * g.OC},
			{"dw", dw, wdw, pixels},
			{"dbias", db, wdb, pixels},
		} {
			for i, want := range cmp.want {
				got := float64(cmp.got[i])
				if diff := math.Abs(got - want); diff > 1e-6+2e-7*float64(cmp.terms)+1e-5*math.Abs(want) {
					t.Errorf("%+v: %s[%d] = %v, want %v", g, cmp.name, i, got, want)
					break
				}
			}
		}
	}
}

// TestCPUEachPassSizesItsOwnScratch runs each convolution pass alone on a
// fresh backend, so that no earlier pass has grown the scratch space it
// needs, and checks it gives the bits of the same pass after all the
// others. The deep network's conv6 at batch 8 is cut into blocks of 3, 3
// and 2 samples, and the short last one has the longest k blocks of the
// filter gradient (the case that once read past its packing buffer).
func TestCPUEachPassSizesItsOwnScratch(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	for _, g := range []kernels.ConvGeom{
		{N: 8, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 5, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 2},
		{N: 3, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 4, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 6, H: 13, W: 11, C: 8, OC: 12, KH: 5, KW: 3, Stride: 2, Pad: 2},
	} {
		x, w, bias, dy := cpuRandom(rng, g.InLen()), cpuRandom(rng, g.FilterLen()), cpuRandom(rng, g.OC), cpuRandom(rng, g.OutLen())
		passes := []struct {
			name string
			run  func(c *kernels.CPU) []float32
		}{
			{"forward", func(c *kernels.CPU) []float32 {
				y := make([]float32, g.OutLen())
				c.ConvForwardReLU(g, x, w, bias, y)
				return y
			}},
			{"backward data", func(c *kernels.CPU) []float32 {
				dx := make([]float32, g.InLen())
				c.ConvBackwardData(g, dy, w, dx)
				return dx
			}},
			{"backward filter", func(c *kernels.CPU) []float32 {
				dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
				c.ConvBackwardFilter(g, x, dy, dw, db)
				return append(dw, db...)
			}},
		}
		all := kernels.NewCPU(3)
		var want [][]float32
		for _, p := range passes {
			want = append(want, p.run(all))
		}
		all.Close()
		for i, p := range passes {
			fresh := kernels.NewCPU(3)
			got := p.run(fresh)
			fresh.Close()
			for j := range got {
				if math.Float32bits(got[j]) != math.Float32bits(want[i][j]) {
					t.Errorf("%+v: %s alone: element %d is %v, after the other passes %v", g, p.name, j, got[j], want[i][j])
					break
				}
			}
		}
	}
}

func cpuWiden(s []float32) []float64 {
	w := make([]float64, len(s))
	for i, v := range s {
		w[i] = float64(v)
	}
	return w
}

// TestCPUDeterministic checks that every thread count gives the same bits
// for every output cpuResults saves.
func TestCPUDeterministic(t *testing.T) {
	want := cpuResults(cpuThreadCounts[0])
	for _, threads := range cpuThreadCounts[1:] {
		got := cpuResults(threads)
		if len(got) != len(want) {
			t.Fatalf("%d threads: %d outputs, %d threads gave %d", threads, len(got), cpuThreadCounts[0], len(want))
		}
		for name, w := range want {
			g := got[name]
			if len(g) != len(w) {
				t.Errorf("%d threads: %s has %d elements, want %d", threads, name, len(g), len(w))
				continue
			}
			for i := range w {
				if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
					t.Errorf("%d threads: %s: element %d is %v, %d threads gave %v", threads, name, i, g[i], cpuThreadCounts[0], w[i])
					break
				}
			}
		}
	}
}

// TestCPUNoAllocations checks that a training step's convolutions, affine
// layers, pooling, activations and batch normalisations allocate nothing
// once their scratch space has grown.
func TestCPUNoAllocations(t *testing.T) {
	c := kernels.NewCPU(2)
	defer c.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	g := kernels.ConvGeom{N: 20, H: 14, W: 14, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1}
	x, w, bias, dy := cpuRandom(rng, g.InLen()), cpuRandom(rng, g.FilterLen()), cpuRandom(rng, g.OC), cpuRandom(rng, g.OutLen())
	y, dx := make([]float32, g.OutLen()), make([]float32, g.InLen())
	dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
	// The filter gradient with patches packed straight into the GEMM's
	// slivers (K = 576), and the input gradient computed as a forward
	// convolution (C ≥ OC).
	gf := kernels.ConvGeom{N: 20, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1}
	fx, fdy, fdw, fdb := cpuRandom(rng, gf.InLen()), cpuRandom(rng, gf.OutLen()), make([]float32, gf.FilterLen()), make([]float32, gf.OC)
	fw, fdx := cpuRandom(rng, gf.FilterLen()), make([]float32, gf.InLen())
	g1 := kernels.ConvGeom{N: 20, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1}
	x1, w1, b1, y1 := cpuRandom(rng, g1.InLen()), cpuRandom(rng, g1.FilterLen()), cpuRandom(rng, g1.OC), make([]float32, g1.OutLen())
	dw1, db1 := make([]float32, g1.FilterLen()), make([]float32, g1.OC)
	pg := kernels.PoolGeom{N: 20, H: 14, W: 14, C: 32, Size: 2, Stride: 2}
	py, pdy, arg := make([]float32, pg.OutLen()), cpuRandom(rng, pg.OutLen()), make([]int32, pg.OutLen())
	const n, in, out = 20, 1568, 50
	ax, aw, ab, ady := cpuRandom(rng, n*in), cpuRandom(rng, in*out), cpuRandom(rng, out), cpuRandom(rng, n*out)
	ay, adx, adw, adb := make([]float32, n*out), make([]float32, n*in), make([]float32, in*out), make([]float32, out)
	mask := make([]float32, n*out)
	samples := make([]int64, n)
	d := kernels.DropoutParams{Ratio: 0.5, Train: true, Seed: 1}
	bn := kernels.BatchNormParams{Rows: g.ColRows(), C: g.OC, Eps: 1e-5, StatWeight: 0.1}
	gamma, beta, runVar := cpuRandom(rng, g.OC), cpuRandom(rng, g.OC), make([]float32, g.OC)
	bnY, bnDx := make([]float32, g.OutLen()), make([]float32, g.OutLen())
	bnMean, bnInv, bnMeanStat, bnVarStat := make([]float32, g.OC), make([]float32, g.OC), make([]float32, g.OC), make([]float32, g.OC)

	for _, tc := range []struct {
		name string
		step func()
	}{
		{"ConvForward", func() { c.ConvForward(g, x, w, bias, y) }},
		{"ConvForwardReLU", func() { c.ConvForwardReLU(g, x, w, bias, y) }},
		{"ConvBackwardData", func() { c.ConvBackwardData(g, dy, w, dx) }},
		{"ConvBackwardFilter", func() { c.ConvBackwardFilter(g, x, dy, dw, db) }},
		{"ConvBackwardFilter K=576", func() { c.ConvBackwardFilter(gf, fx, fdy, fdw, fdb) }},
		{"ConvBackwardData as a forward convolution", func() { c.ConvBackwardData(gf, fdy, fw, fdx) }},
		{"Conv1", func() { c.ConvForwardReLU(g1, x1, w1, b1, y1); c.ConvBackwardFilter(g1, x1, y1, dw1, db1) }},
		{"ReLU", func() { c.ReLUForward(y, y); c.ReLUBackward(y, dy, dy) }},
		{"MaxPool", func() { c.MaxPoolForward(pg, y, py, arg); c.MaxPoolBackward(pg, pdy, arg, y) }},
		{"Affine", func() {
			c.AffineForward(n, in, out, ax, aw, ab, ay)
			c.AffineBackward(n, in, out, ax, aw, ady, adx, adw, adb)
		}},
		{"Dropout", func() { c.DropoutForward(d, n, out, samples, ay, ay, mask); c.DropoutBackward(mask, ady, ady) }},
		{"BatchNorm", func() {
			c.BatchNormForwardTrain(bn, y, gamma, beta, bnY, bnMean, bnInv, bnMeanStat, bnVarStat)
			c.BatchNormForwardInfer(bn, y, gamma, beta, bnMean, runVar, bnY)
			c.BatchNormBackward(bn, y, gamma, bnMean, bnInv, dy, bnDx, bnMeanStat, bnVarStat)
		}},
	} {
		tc.step() // grow the scratch space
		if allocs := testing.AllocsPerRun(5, tc.step); allocs > 0 {
			t.Errorf("%s: %v allocations per call, want 0", tc.name, allocs)
		}
	}
}

// TestCPUCloseTwice checks that Close may be repeated.
func TestCPUCloseTwice(t *testing.T) {
	c := kernels.NewCPU(3)
	c.Close()
	c.Close()
}
