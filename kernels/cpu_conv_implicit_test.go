package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// cpuImplicitGeoms are convolutions whose forward pass takes the implicit
// GEMM, at awkward sizes: channel counts whose runs are 4, 8, 12 or 20
// floats wide, filter counts that fill a 32-wide sliver, a 16-wide one or
// part of either, strides 1 and 2, padding 0 to 2, odd images, batches
// whose pixel rows end inside a 12-row tile, a short last block, and the
// deep network's layers. filter says whether the filter gradient takes its
// implicit GEMM too (a filter row of whole 12-row tiles, OC whole slivers),
// through Sgemm's k blocks (K ≤ 160) or cpuFilterBlockK's (k-blocked).
var cpuImplicitGeoms = []struct {
	g      ConvGeom
	filter bool
}{
	{ConvGeom{N: 1, H: 5, W: 5, C: 4, OC: 4, KH: 3, KW: 3, Stride: 1, Pad: 1}, false},
	{ConvGeom{N: 3, H: 7, W: 9, C: 8, OC: 20, KH: 3, KW: 3, Stride: 1, Pad: 0}, false},
	{ConvGeom{N: 2, H: 11, W: 7, C: 12, OC: 48, KH: 3, KW: 3, Stride: 2, Pad: 1}, true},
	{ConvGeom{N: 5, H: 9, W: 9, C: 20, OC: 80, KH: 3, KW: 3, Stride: 1, Pad: 2}, true},
	{ConvGeom{N: 4, H: 13, W: 11, C: 4, OC: 17, KH: 5, KW: 3, Stride: 2, Pad: 2}, false},
	{ConvGeom{N: 4, H: 13, W: 11, C: 4, OC: 16, KH: 5, KW: 3, Stride: 2, Pad: 2}, true},
	{ConvGeom{N: 3, H: 6, W: 10, C: 16, OC: 33, KH: 2, KW: 4, Stride: 1, Pad: 1}, false},
	{ConvGeom{N: 3, H: 6, W: 10, C: 12, OC: 32, KH: 2, KW: 4, Stride: 1, Pad: 1}, true},
	{ConvGeom{N: 7, H: 9, W: 5, C: 8, OC: 48, KH: 3, KW: 3, Stride: 1, Pad: 0}, true},
	{ConvGeom{N: 6, H: 7, W: 7, C: 12, OC: 16, KH: 1, KW: 1, Stride: 2, Pad: 1}, true},
	{ConvGeom{N: 2, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1}, true},
	{ConvGeom{N: 5, H: 14, W: 14, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1}, true},
	{ConvGeom{N: 3, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 2}, true},
	{ConvGeom{N: 7, H: 8, W: 8, C: 32, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1}, true},
	{ConvGeom{N: 9, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1}, true},
	{ConvGeom{N: 8, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1}, true},
	{ConvGeom{N: 37, H: 4, W: 4, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1}, true},
}

// cpuImplicitOutputs runs the forward pass, the forward pass with ReLU and
// the backward data pass (a forward convolution of the flipped filter for
// stride 1) of g, on inputs with NaNs, infinities and zeros of both signs
// among awkward values.
func cpuImplicitOutputs(g ConvGeom, threads int) map[string][]float32 {
	c := NewCPU(threads)
	defer c.Close()
	rng := rand.New(rand.NewPCG(uint64(g.N*1000+g.C), uint64(g.OC)))
	random := func(n int) []float32 {
		s := make([]float32, n)
		sgemmAwkward(rng, s, true)
		for range max(1, n/500) {
			switch i := rng.IntN(n); rng.IntN(4) {
			case 0:
				s[i] = float32(math.NaN())
			case 1:
				s[i] = float32(math.Inf(1))
			case 2:
				s[i] = float32(math.Inf(-1))
			default:
				s[i] = float32(math.Copysign(0, -1))
			}
		}
		return s
	}
	x, w, bias, dy := random(g.InLen()), random(g.FilterLen()), random(g.OC), random(g.OutLen())
	out := map[string][]float32{}
	y := make([]float32, g.OutLen())
	c.ConvForward(g, x, w, bias, y)
	out["y"] = append([]float32(nil), y...)
	c.ConvForwardReLU(g, x, w, bias, y)
	out["yReLU"] = append([]float32(nil), y...)
	dx := make([]float32, g.InLen())
	c.ConvBackwardData(g, dy, w, dx)
	out["dx"] = dx
	dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
	c.ConvBackwardFilter(g, x, dy, dw, db)
	out["dw"], out["db"] = dw, db
	return out
}

// TestCPUImplicitMatchesIm2col checks that the implicit GEMMs give the bits
// of the paths that gather patches first (im2col, or packed slivers), NaNs
// and signed zeros included, on one and three threads, and that the forward
// passes of these geometries (and the backward data passes of the stride-1
// ones, and the filter gradients marked) do take them.
func TestCPUImplicitMatchesIm2col(t *testing.T) {
	if sgemmBest.implicitWide == nil {
		t.Skipf("the %s kernels have no implicit GEMM: the convolutions always gather their patches here", sgemmBest.name)
	}
	for _, tc := range cpuImplicitGeoms {
		g := tc.g
		if !cpuImplicitFits(g, cpuPlanConv(g)) {
			t.Errorf("%+v: the forward pass does not take the implicit GEMM", g)
		}
		if fg, ok := cpuFlipGeom(g); ok && !cpuImplicitFits(fg, cpuPlanConv(fg)) {
			t.Errorf("%+v: the backward data pass (%+v) does not take the implicit GEMM", g, fg)
		}
		if got := cpuImplicitFilterFits(g, cpuPlanConv(g)); got != tc.filter {
			t.Errorf("%+v: the filter gradient takes the implicit GEMM: %v, want %v", g, got, tc.filter)
		}
		for _, threads := range []int{1, 3} {
			got := cpuImplicitOutputs(g, threads)
			cpuImplicitEnabled = false
			want := cpuImplicitOutputs(g, threads)
			cpuImplicitEnabled = true
			for name, w := range want {
				for i, v := range got[name] {
					if math.Float32bits(v) != math.Float32bits(w[i]) {
						t.Errorf("%+v, %d threads: %s[%d] is %v implicit, %v gathered", g, threads, name, i, v, w[i])
						break
					}
				}
			}
		}
	}
}

// TestCPUImplicitDeclines checks the shapes the implicit GEMM leaves to
// im2col: runs that are not whole 4-float steps (one or three channels with
// an odd filter width) and 1×1 convolutions, which read x directly.
func TestCPUImplicitDeclines(t *testing.T) {
	for _, g := range []ConvGeom{
		{N: 2, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 2, H: 9, W: 9, C: 3, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 2, H: 9, W: 9, C: 32, OC: 24, KH: 1, KW: 1, Stride: 1, Pad: 0},
	} {
		if cpuImplicitFits(g, cpuPlanConv(g)) || cpuImplicitFilterFits(g, cpuPlanConv(g)) {
			t.Errorf("%+v takes the implicit GEMM", g)
		}
	}
}

// TestSgemmImplicitChecksBounds checks that the implicit kernels refuse,
// with a panic that names them, rows or runs that would read outside x.
func TestSgemmImplicitChecksBounds(t *testing.T) {
	if sgemmBest.implicitWide == nil {
		t.Skipf("the %s kernels have no implicit GEMM", sgemmBest.name)
	}
	x := make([]float32, 64)
	b := make([]float32, 8*32)
	c := make([]float32, 12*32)
	rows := make([]int, 12)
	ends := []int{16, 48}
	good := sgemmRuns{off0: 0, jump: 16, ends: ends, kc: 8}
	for name, tc := range map[string]struct {
		rows []int
		r    sgemmRuns
	}{
		"row past x":      {rows: append(append([]int(nil), rows[:11]...), 4*64-32), r: good},
		"negative row":    {rows: append([]int{-4}, rows[1:]...), r: good},
		"too few rows":    {rows: rows[:11], r: good},
		"run not 4 steps": {rows: rows, r: sgemmRuns{off0: 0, jump: 16, ends: []int{12, 48}, kc: 8}},
		"kc disagrees":    {rows: rows, r: sgemmRuns{off0: 0, jump: 16, ends: ends, kc: 12}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s: no panic", name)
				} else if msg := fmt.Sprint(r); msg == "" {
					t.Errorf("%s: empty panic", name)
				}
			}()
			sgemmBest.implicitWide(1, tc.rows, x, &tc.r, b, c, 32, 32, 0)
		}()
	}
	// The same call in range runs.
	sgemmBest.implicitWide(1, rows, x, &good, b, c, 32, 32, 0)
}

// TestSgemmFilterChecksBounds checks that the filter kernels refuse, with
// a panic that names them, runs that would read outside the image or dy.
func TestSgemmFilterChecksBounds(t *testing.T) {
	if sgemmBest.filterWide == nil {
		t.Skipf("the %s kernels have no implicit filter GEMM", sgemmBest.name)
	}
	a := make([]float32, 96)
	b := make([]float32, 4*32)
	c := make([]float32, 24*32)
	for name, tc := range map[string]struct {
		tiles int
		runs  []int
		b     []float32
	}{
		"run past a":      {tiles: 1, runs: []int{4 * 90, 1}},
		"tiles past a":    {tiles: 2, runs: []int{4 * 40, 1}},
		"negative offset": {tiles: 1, runs: []int{-4, 1}},
		"empty run":       {tiles: 1, runs: []int{0, 0}},
		"odd runs":        {tiles: 1, runs: []int{0, 1, 16}},
		"steps past b":    {tiles: 1, runs: []int{0, 2, 64, 3}},
		"no tiles":        {tiles: 0, runs: []int{0, 1}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			sgemmBest.filterWide(tc.tiles, a, 4*48, tc.runs, 16, b, 32, c, 32, 32, 0)
		}()
	}
	// In range: 4 pixels in two runs, two tiles.
	sgemmBest.filterWide(2, a, 4*48, []int{0, 2, 64, 2}, 16, b, 32, c, 32, 32, 0)
}

// BenchmarkCPUConvImplicit times the deep network's forward, backward data
// and filter-gradient passes at batch 100 through the implicit GEMMs and
// through the paths that gather patches first (im2col, and for the filter
// gradients of K = 288 and 576 the im2col-and-Sgemm path that the packed
// slivers once replaced), side by side: one after the other for each layer,
// so that -count rounds alternate. GFLOP/s as BenchmarkCPUConv counts them.
func BenchmarkCPUConvImplicit(b *testing.B) {
	c := NewCPU(0)
	defer c.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []float32 {
		s := make([]float32, n)
		sgemmAwkward(rng, s, false)
		return s
	}
	for _, g := range []ConvGeom{
		{N: 100, H: 28, W: 28, C: 16, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 100, H: 14, W: 14, C: 16, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 100, H: 14, W: 14, C: 32, OC: 32, KH: 3, KW: 3, Stride: 1, Pad: 2},
		{N: 100, H: 8, W: 8, C: 32, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
		{N: 100, H: 8, W: 8, C: 64, OC: 64, KH: 3, KW: 3, Stride: 1, Pad: 1},
	} {
		x, w, bias, dy := random(g.InLen()), random(g.FilterLen()), random(g.OC), random(g.OutLen())
		y, dx := make([]float32, g.OutLen()), make([]float32, g.InLen())
		dw, db := make([]float32, g.FilterLen()), make([]float32, g.OC)
		flops := 2 * float64(g.ColRows()) * float64(g.ColCols()) * float64(g.OC)
		name := fmt.Sprintf("%dx%dx%d-%d-pad%d", g.H, g.W, g.C, g.OC, g.Pad)
		for _, pass := range []struct {
			name string
			run  func()
		}{
			{"ForwardReLU", func() { c.ConvForwardReLU(g, x, w, bias, y) }},
			{"BackwardData", func() { c.ConvBackwardData(g, dy, w, dx) }},
			{"BackwardFilter", func() { c.ConvBackwardFilter(g, x, dy, dw, db) }},
		} {
			for _, implicit := range []bool{true, false} {
				path := map[bool]string{true: "implicit", false: "gathered"}[implicit]
				b.Run(pass.name+"/"+name+"/"+path, func(b *testing.B) {
					cpuImplicitEnabled = implicit
					defer func() { cpuImplicitEnabled = true }()
					pass.run()
					for b.Loop() {
						pass.run()
					}
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}
