package cuda

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/kernels/kernelstest"
	"github.com/dpcnn/dpcnn/model"
)

// RequireCUDAEnv turns every skip for want of a CUDA device into a failure:
// set it on GPU hosts, where a missing device is a broken setup.
const RequireCUDAEnv = "DPCNN_REQUIRE_CUDA"

var shared struct {
	once sync.Once
	b    *Backend
	err  error
}

// deviceBackend returns the package's shared CUDA backend, skipping the
// test (with the reason) when there is no usable device, or failing it
// when RequireCUDAEnv is set or the device is present but broken.
func deviceBackend(t testing.TB) *Backend {
	t.Helper()
	shared.once.Do(func() {
		o, err := OptionsFromEnv()
		if err != nil {
			shared.err = err
			return
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		shared.b, shared.err = New(o)
		if shared.err == nil {
			info := shared.b.Info()
			fmt.Fprintf(os.Stderr, "cuda test device: %s (sm_%d%d, %d SMs, %.1f GiB), driver CUDA %d.%d %s, NVRTC %s %s, cuBLAS %d %s, kernels %s from %s, sync every launch %v\n",
				info.Name, info.ComputeMajor, info.ComputeMinor, info.Multiprocessors, float64(info.TotalMemory)/(1<<30),
				info.DriverVersion/1000, info.DriverVersion%1000/10, info.DriverPath, info.NVRTCVersion, info.NVRTCPath,
				info.CUBLASVersion, info.CUBLASPath, info.KernelArch, info.KernelFrom, info.SyncEveryLaunch)
		}
	})
	if shared.err != nil {
		switch {
		case os.Getenv(RequireCUDAEnv) == "1":
			t.Fatalf("%s=1 but the CUDA backend cannot open: %v", RequireCUDAEnv, shared.err)
		case IsUnavailable(shared.err):
			t.Skipf("no usable CUDA device (set %s=1 to fail instead): %v", RequireCUDAEnv, shared.err)
		default:
			t.Fatalf("a CUDA driver is present but the backend cannot open: %v", shared.err)
		}
	}
	return shared.b
}

// syncOK fails t when work issued so far faulted, so an asynchronous fault
// is charged to the test that caused it.
func syncOK(t *testing.T, b *Backend) {
	t.Helper()
	if err := b.Sync(); err != nil {
		t.Fatalf("device fault: %v", err)
	}
}

// TestConformance runs the kernels conformance suite on the GPU.
func TestConformance(t *testing.T) {
	b := deviceBackend(t)
	kernelstest.TestBackend(t, b)
	syncOK(t, b)
}

// TestDeviceConformance runs the conformance suite on the Device: every
// operation on tensors in GPU memory.
func TestDeviceConformance(t *testing.T) {
	b := deviceBackend(t)
	kernelstest.TestDevice(t, b, b.Device())
	syncOK(t, b)
}

// TestBitwiseAgreementWithCPU checks the primitives whose CUDA kernels do
// the CPU's arithmetic in the CPU's order: their results must equal the CPU
// backend's bit for bit (dropout masks above all, which make workers
// agree). GEMM-based ones are excluded: cuBLAS sums in its own order.
func TestBitwiseAgreementWithCPU(t *testing.T) {
	b := deviceBackend(t)
	checkBitwiseAgreementWithCPU(t, b)
	syncOK(t, b)
}

func checkBitwiseAgreementWithCPU(t *testing.T, b *Backend) {
	cpu := kernels.NewCPU(1)
	defer cpu.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(2*rng.Float64() - 1)
		}
		return s
	}
	same := func(what string, got, want []float32) {
		t.Helper()
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Errorf("%s: element %d: cuda %v, cpu %v", what, i, got[i], want[i])
				return
			}
		}
	}
	for _, d := range []kernels.DropoutParams{
		{Ratio: 0.5, Train: true, Seed: 1, Step: 3, Layer: 17},
		{Ratio: 0.25, Inverted: true, Train: true, Seed: 0xfeedface12345678, Step: 1<<32 + 5, Layer: 2},
	} {
		rows, cols := 37, 1024+3
		samples := make([]int64, rows)
		for i := range samples {
			samples[i] = rng.Int64N(1 << 36)
		}
		x := fill(rows * cols)
		yG, mG := make([]float32, rows*cols), make([]float32, rows*cols)
		yC, mC := make([]float32, rows*cols), make([]float32, rows*cols)
		b.DropoutForward(d, rows, cols, samples, x, yG, mG)
		cpu.DropoutForward(d, rows, cols, samples, x, yC, mC)
		same(fmt.Sprintf("dropout mask %+v", d), mG, mC)
		same(fmt.Sprintf("dropout y %+v", d), yG, yC)
	}
	pg := kernels.PoolGeom{N: 3, H: 14, W: 14, C: 32, Size: 3, Stride: 2, Pad: 1}
	x := fill(pg.InLen())
	yG, yC := make([]float32, pg.OutLen()), make([]float32, pg.OutLen())
	aG, aC := make([]int32, pg.OutLen()), make([]int32, pg.OutLen())
	b.MaxPoolForward(pg, x, yG, aG)
	cpu.MaxPoolForward(pg, x, yC, aC)
	same("maxpool y", yG, yC)
	dy := fill(pg.OutLen())
	dxG, dxC := make([]float32, pg.InLen()), make([]float32, pg.InLen())
	b.MaxPoolBackward(pg, dy, aC, dxG)
	cpu.MaxPoolBackward(pg, dy, aC, dxC)
	same("maxpool dx", dxG, dxC)
	b.AvgPoolBackward(pg, dy, dxG)
	cpu.AvgPoolBackward(pg, dy, dxC)
	same("avgpool dx", dxG, dxC)
	cg := kernels.ConvGeom{N: 2, H: 9, W: 9, C: 5, OC: 4, KH: 3, KW: 3, Stride: 2, Pad: 1}
	col := fill(cg.ColRows() * cg.ColCols())
	cdG, cdC := make([]float32, cg.InLen()), make([]float32, cg.InLen())
	b.Col2Im(cg, col, cdG)
	cpu.Col2Im(cg, col, cdC)
	same("col2im", cdG, cdC)

	// Batch normalisation: double sums in row order, y and dx from the
	// rounded statistics and sums, exactly as the CPU.
	for _, p := range []kernels.BatchNormParams{
		{Rows: 392, C: 32, Eps: 1e-5, StatWeight: 0.1},
		{Rows: 7, C: 17, Eps: 1e-3, StatWeight: 1},
		{Rows: 1, C: 3, Eps: 1e-5, StatWeight: 0.1},
	} {
		n, c := p.Rows*p.C, p.C
		x, gamma, beta, dy := fill(n), fill(c), fill(c), fill(n)
		for i := range x {
			x[i] = 3*x[i] + float32(i%c)/4
		}
		var outG, outC [5][]float32 // mean, invStd, meanStat, varStat, y
		for _, o := range []*[5][]float32{&outG, &outC} {
			*o = [5][]float32{make([]float32, c), make([]float32, c), make([]float32, c), make([]float32, c), make([]float32, n)}
		}
		b.BatchNormForwardTrain(p, x, gamma, beta, outG[4], outG[0], outG[1], outG[2], outG[3])
		cpu.BatchNormForwardTrain(p, x, gamma, beta, outC[4], outC[0], outC[1], outC[2], outC[3])
		for i, name := range []string{"mean", "invStd", "meanStat", "varStat", "y"} {
			same(fmt.Sprintf("batchnorm %+v train %s", p, name), outG[i], outC[i])
		}
		runVar := fill(c)
		for i := range runVar {
			runVar[i] = runVar[i]*runVar[i] + 0.1
		}
		yG, yC := make([]float32, n), make([]float32, n)
		b.BatchNormForwardInfer(p, x, gamma, beta, outC[0], runVar, yG)
		cpu.BatchNormForwardInfer(p, x, gamma, beta, outC[0], runVar, yC)
		same(fmt.Sprintf("batchnorm %+v infer y", p), yG, yC)
		dxG, dgG, dbG := make([]float32, n), make([]float32, c), make([]float32, c)
		dxC, dgC, dbC := make([]float32, n), make([]float32, c), make([]float32, c)
		b.BatchNormBackward(p, x, gamma, outC[0], outC[1], dy, dxG, dgG, dbG)
		cpu.BatchNormBackward(p, x, gamma, outC[0], outC[1], dy, dxC, dgC, dbC)
		same(fmt.Sprintf("batchnorm %+v dx", p), dxG, dxC)
		same(fmt.Sprintf("batchnorm %+v dgamma", p), dgG, dgC)
		same(fmt.Sprintf("batchnorm %+v dbeta", p), dbG, dbC)
	}
}

// TestSyncEveryLaunch runs a convolution with synchronisation after every
// launch, the debugging mode, on a backend of its own.
func TestSyncEveryLaunch(t *testing.T) {
	deviceBackend(t)
	b, err := New(Options{SyncEveryLaunch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kernelstest.TestConv(t, b)
}

// TestConcurrentBackends runs two backends from two goroutines at once:
// each call sets its context current on its own locked thread.
func TestConcurrentBackends(t *testing.T) {
	deviceBackend(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	results := make([][]float32, 2)
	for i := range 2 {
		wg.Go(func() {
			b, err := New(Options{})
			if err != nil {
				errs[i] = err
				return
			}
			defer b.Close()
			g := kernels.ConvGeom{N: 4, H: 28, W: 28, C: 1, OC: 16, KH: 3, KW: 3, Stride: 1, Pad: 1}
			x, w, bias := make([]float32, g.InLen()), make([]float32, g.FilterLen()), make([]float32, g.OC)
			for j := range x {
				x[j] = float32(j%13) / 13
			}
			for j := range w {
				w[j] = float32(j%7) / 7
			}
			y := make([]float32, g.OutLen())
			for range 20 {
				b.ConvForward(g, x, w, bias, y)
			}
			results[i] = y
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for j := range results[0] {
		if results[0][j] != results[1][j] {
			t.Fatalf("element %d: %v from one goroutine, %v from the other", j, results[0][j], results[1][j])
		}
	}
}

// lrnDropoutSpec is a small network that uses every layer type the
// built-ins leave out (LRN, avg-pool, inverted dropout, sigmoid).
func lrnDropoutSpec() model.Spec {
	return model.Spec{
		Name: "lrn-dropout", Input: model.InputShape{Height: 12, Width: 12, Channels: 1}, Classes: 10, Init: "he",
		Layers: []model.LayerSpec{
			{Type: model.LayerConv, Filters: 8, Size: 3, Pad: 1},
			{Type: model.LayerReLU},
			{Type: model.LayerLRN, Size: 5, Alpha: 1e-2, Beta: 0.75, K: 2},
			{Type: model.LayerMaxPool, Size: 3, Stride: 2, Pad: 1},
			{Type: model.LayerConv, Filters: 6, Size: 3},
			{Type: model.LayerSigmoid},
			{Type: model.LayerAvgPool, Size: 2},
			{Type: model.LayerAffine, Units: 20},
			{Type: model.LayerDropout, Ratio: 0.3, Inverted: true},
			{Type: model.LayerAffine, Units: 10},
			{Type: model.LayerSoftmax},
		},
	}
}

// TestNetworksMatchReference trains one step of every built-in network,
// and of a network with the remaining layer types, on the CUDA backend (its
// tensors in GPU memory) and on the float64 reference from the same
// parameters, and compares the loss,
// the correct count and every gradient tensor by name (the same check and
// tolerance as the CPU backend's test in package model).
func TestNetworksMatchReference(t *testing.T) {
	b := deviceBackend(t)
	checkNetworksMatchReference(t, b)
	syncOK(t, b)
}

func checkNetworksMatchReference(t *testing.T, b *Backend) {
	specs := []model.Spec{lrnDropoutSpec()}
	for _, name := range model.BuiltinNames() {
		s, err := model.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
	}
	for _, s := range specs {
		t.Run(s.Name, func(t *testing.T) {
			const batch = 3
			ref, err := model.New(s, kernels.NewReference[float64](), batch)
			if err != nil {
				t.Fatal(err)
			}
			gpu, err := model.New[float32](s, b, batch)
			if err != nil {
				t.Fatal(err)
			}
			defer gpu.Close()
			ref.InitParams(21)
			if err := ref.ImportParams(ref.ExportParams()); err != nil { // round to float32 on both sides
				t.Fatal(err)
			}
			if err := gpu.ImportParams(ref.ExportParams()); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(21, 21))
			x64 := make([]float64, batch*ref.InputSize())
			x32 := make([]float32, len(x64))
			for i := range x64 {
				x32[i] = r.Float32()
				x64[i] = float64(x32[i])
			}
			labels := []int32{1, 7, 3}
			samples := []int64{4, 40, 400}
			rc := model.RunContext{Train: true, Seed: 21, Step: 2}
			refLoss, refCorrect, err := ref.Loss(x64, labels, samples, rc, 1.0/batch)
			if err != nil {
				t.Fatal(err)
			}
			gpuLoss, gpuCorrect, err := gpu.Loss(x32, labels, samples, rc, 1.0/batch)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(refLoss-gpuLoss) > 1e-5*refLoss || refCorrect != gpuCorrect {
				t.Errorf("loss %v, %d correct; reference %v, %d correct", gpuLoss, gpuCorrect, refLoss, refCorrect)
			}
			if err := ref.Backward(); err != nil {
				t.Fatal(err)
			}
			if err := gpu.Backward(); err != nil {
				t.Fatal(err)
			}
			worstAll := 0.0
			for i, rp := range ref.Params() {
				gp := gpu.Params()[i]
				scale := 0.0
				for _, g := range rp.Grad {
					scale = max(scale, math.Abs(g))
				}
				worst, at := 0.0, 0
				for j, g := range rp.Grad {
					if d := math.Abs(float64(gp.Grad[j]) - g); d > worst || math.IsNaN(d) {
						worst, at = d, j
					}
				}
				worstAll = max(worstAll, worst/scale)
				if !(worst <= 1e-4*scale) {
					t.Errorf("%s[%d]: gradient %v, reference %v (tensor max %v)", rp.Name, at, gp.Grad[at], rp.Grad[at], scale)
				}
			}
			t.Logf("loss %v vs %v; worst gradient difference %.2g of its tensor's largest", gpuLoss, refLoss, worstAll)
		})
	}
}

// TestTrainingIsDeterministic runs the same deep-net step twice on the GPU
// and requires bit-identical gradients: no atomics, one stream, cuBLAS
// reproducible on one device.
func TestTrainingIsDeterministic(t *testing.T) {
	b := deviceBackend(t)
	checkDeterministic(t, b, 64)
	syncOK(t, b)
}

func checkDeterministic(t *testing.T, b *Backend, batch int) {
	s, err := model.Builtin("deep")
	if err != nil {
		t.Fatal(err)
	}
	var grads [2][]float32
	for run := range 2 {
		net, err := model.New[float32](s, b, batch)
		if err != nil {
			t.Fatal(err)
		}
		net.InitParams(5)
		x, labels, samples := syntheticBatch(batch, net.InputSize(), 5)
		if _, _, err := net.Loss(x, labels, samples, model.RunContext{Train: true, Seed: 5, Step: 1}, 1/float32(batch)); err != nil {
			t.Fatal(err)
		}
		if err := net.Backward(); err != nil {
			t.Fatal(err)
		}
		for _, p := range net.Params() {
			grads[run] = append(grads[run], p.Grad...)
		}
		if err := net.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range grads[0] {
		if math.Float32bits(grads[0][i]) != math.Float32bits(grads[1][i]) {
			t.Fatalf("gradient element %d: %v, then %v", i, grads[0][i], grads[1][i])
		}
	}
}

// syntheticBatch is batch MNIST-sized inputs in [0, 1) with labels and
// sample indices, from a fixed seed.
func syntheticBatch(batch, inSize int, seed uint64) ([]float32, []int32, []int64) {
	r := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, batch*inSize)
	for i := range x {
		x[i] = r.Float32()
	}
	labels := make([]int32, batch)
	samples := make([]int64, batch)
	for i := range labels {
		labels[i], samples[i] = int32(r.IntN(10)), int64(r.IntN(60000))
	}
	return x, labels, samples
}

// TestNetworkOnDeviceMatchesHostSlices checks model.Network with its
// tensors in GPU memory against the same network computed through the
// Backend's methods on host slices (every call copying its tensors in and
// out).
func TestNetworkOnDeviceMatchesHostSlices(t *testing.T) {
	b := deviceBackend(t)
	checkDeviceMatchesHostSlices(t, b)
	syncOK(t, b)
}

// hostSlices is a backend without its Device: a network on it keeps its
// tensors in host memory (kernels.OnHost) and computes through the
// Backend's methods on slices, as before device residency.
type hostSlices struct{ kernels.Backend[float32] }

// checkDeviceMatchesHostSlices trains one step of every network both with
// its tensors on the device and through hostSlices on the same backend,
// from the same parameters and batch: losses, correct counts, every
// gradient, the test-mode logits and predictions must be equal bit for
// bit, since both run the same kernels and GEMMs in the same order.
func checkDeviceMatchesHostSlices(t *testing.T, b *Backend) {
	specs := []model.Spec{lrnDropoutSpec()}
	for _, name := range model.BuiltinNames() {
		s, err := model.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
	}
	for _, s := range specs {
		t.Run(s.Name, func(t *testing.T) {
			const batch = 5
			host, err := model.New[float32](s, hostSlices{b}, batch)
			if err != nil {
				t.Fatal(err)
			}
			host.InitParams(9)
			net, err := model.New[float32](s, b, batch)
			if err != nil {
				t.Fatal(err)
			}
			defer net.Close()
			if err := net.ImportParams(host.ExportParams()); err != nil {
				t.Fatal(err)
			}
			x, labels, samples := syntheticBatch(batch, host.InputSize(), 9)
			rc := model.RunContext{Train: true, Seed: 9, Step: 3}
			wantLoss, wantCorrect, err := host.Loss(x, labels, samples, rc, 1/float32(batch))
			if err != nil {
				t.Fatal(err)
			}
			if err := host.Backward(); err != nil {
				t.Fatal(err)
			}
			gotLoss, gotCorrect, err := net.Loss(x, labels, samples, rc, 1/float32(batch))
			if err != nil {
				t.Fatal(err)
			}
			if err := net.Backward(); err != nil {
				t.Fatal(err)
			}
			if math.Float64bits(gotLoss) != math.Float64bits(wantLoss) || gotCorrect != wantCorrect {
				t.Errorf("on the device: loss %v, %d correct; through host slices %v, %d correct", gotLoss, gotCorrect, wantLoss, wantCorrect)
			}
			for i, p := range host.Params() {
				for j, g := range p.Grad {
					if got := net.Params()[i].Grad[j]; math.Float32bits(got) != math.Float32bits(g) {
						t.Errorf("%s[%d]: gradient %v on the device, %v through host slices", p.Name, j, got, g)
						break
					}
				}
			}
			wantLogits, err := host.Forward(x, batch, nil, model.RunContext{})
			if err != nil {
				t.Fatal(err)
			}
			wantLogits = slices.Clone(wantLogits)
			gotLogits, err := net.Forward(x, batch, nil, model.RunContext{})
			if err != nil {
				t.Fatal(err)
			}
			for j := range wantLogits {
				if math.Float32bits(gotLogits[j]) != math.Float32bits(wantLogits[j]) {
					t.Errorf("logit %d: %v on the device, %v through host slices", j, gotLogits[j], wantLogits[j])
					break
				}
			}
			want, got := make([]int32, batch), make([]int32, batch)
			if err := host.Predict(x, batch, want); err != nil {
				t.Fatal(err)
			}
			if err := net.Predict(x, batch, got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("predictions %v on the device, %v through host slices", got, want)
			}
		})
	}
}
