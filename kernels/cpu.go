package kernels

import (
	"fmt"
	"runtime"
)

// CPU is the fast float32 backend for ordinary processors: convolutions are
// im2col followed by one matrix multiply per block of samples, and the work
// of every large primitive is spread over a fixed number of threads.
//
// Results are bit-for-bit the same for any number of threads. Work is cut
// into items by rules that depend only on the sizes of the problem (never on
// the thread count), each item is computed the same way whichever thread
// picks it up, and sums over the batch (parameter gradients) are computed as
// one partial sum per item and then added in item order.
//
// A CPU keeps scratch space, grown on demand and reused, so that a training
// step allocates nothing once every layer has run once. Like every Backend it
// is not safe for concurrent use.
type CPU struct {
	threads int
	workers *cpuWorkers

	// col holds each thread's im2col (or, backwards, dcol) block.
	col [][]float32
	// gemmSpace holds each thread's GEMM packing buffers.
	gemmSpace []cpuGemmSpace
	// partials holds the gradient chunks' partial sums of ConvBackwardFilter,
	// chunk after chunk, each a filter gradient (OC×K transposed, or K×OC;
	// see cpuConvPlan.kMajor) followed by a bias gradient (OC).
	partials []float32
	// packedW holds a weight matrix packed once for the GEMMs of all the
	// blocks of one call: a convolution's W, or Wᵀ for its backward data
	// pass and for the affine layer's input gradient.
	packedW SgemmPackedB
	// implicit is the current forward convolution's implicit GEMM, when
	// it takes that path.
	implicit cpuImplicit
	// filterRuns holds each thread's pixel runs of the filter gradient's
	// current k block (see cpu_conv_filter_implicit.go).
	filterRuns [][]int
	// flipped holds the flipped filter of a backward data pass computed
	// as a forward convolution (see cpuFlipGeom), then a zero bias.
	flipped []float32

	// The argument blocks of the parallel tasks. Keeping them in the
	// backend lets a task reach a worker as a pointer without allocating.
	conv    cpuConvArgs
	gemm    cpuGemmTask
	affine  cpuAffineBackwardTask
	pool    cpuPoolTask
	span    cpuSpanTask
	dropout cpuDropoutTask
	lrn     cpuLRNTask
	bn      cpuBNTask
	adam    cpuAdamTask

	// bnRootVar holds √(runVar+Eps) per channel for BatchNormForwardInfer.
	bnRootVar []float64
}

var _ Backend[float32] = (*CPU)(nil)

// cpuGemmSpace is one thread's SgemmWorkspace, padded to whole cache lines:
// every multiply writes its workspace's slice headers, and two threads'
// workspaces must not share a line.
type cpuGemmSpace struct {
	SgemmWorkspace
	_ [64]byte
}

// NewCPU returns a CPU backend that uses threads threads (the calling
// goroutine and threads−1 helpers); threads ≤ 0 means runtime.GOMAXPROCS(0).
// The helpers stop when Close is called or the backend becomes unreachable.
func NewCPU(threads int) *CPU {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	c := &CPU{threads: threads, workers: newCPUWorkers(threads), col: make([][]float32, threads), gemmSpace: make([]cpuGemmSpace, threads)}
	// The helpers reference only the worker set, never c, so c can become
	// unreachable while they wait.
	runtime.AddCleanup(c, (*cpuWorkers).close, c.workers)
	return c
}

// Name reports "cpu".
func (*CPU) Name() string { return "cpu" }

// Threads reports the number of threads the backend computes with.
func (c *CPU) Threads() int { return c.threads }

// Close stops the helper goroutines. The backend must not be used after
// Close; calling Close again does nothing.
func (c *CPU) Close() { c.workers.close() }

// parallel runs items 0..items−1 of t, on every thread when work (a rough
// count of floating-point operations or elements touched) is large enough to
// pay for waking the helpers, else on the calling goroutine. Items must not
// depend on where they run, so the choice does not change any result.
func (c *CPU) parallel(t cpuTask, items, work int) {
	if items <= 1 || c.threads == 1 || work < cpuMinParallelWork {
		for i := range items {
			t.run(0, i)
		}
		return
	}
	c.workers.run(t, items)
}

// cpuMinParallelWork is the amount of work below which waking the helper
// threads (a few microseconds) costs more than it saves.
const cpuMinParallelWork = 1 << 15

// growCol makes every thread's col block hold at least n floats. It runs on
// the calling goroutine, before a task, so the workers never resize shared
// state.
func (c *CPU) growCol(n int) {
	for w := range c.col {
		c.col[w] = cpuGrow(c.col[w], n)
	}
}

// growEdges makes sure every thread's GEMM workspace has its edge tile,
// which the implicit forward pass uses without going through Sgemm.
func (c *CPU) growEdges() {
	for w := range c.gemmSpace {
		if e := &c.gemmSpace[w].edge; len(*e) < cpuTileRows*32 {
			*e = make([]float32, cpuTileRows*32)
		}
	}
}

// cpuGrow returns buf resized to n floats, reallocated only when its
// capacity is too small. The contents are not preserved.
func cpuGrow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// cpuNeed panics when a caller passes a slice shorter than its geometry
// implies. Checking on the calling goroutine, before any helper starts, turns
// what would be a crash inside a worker into an ordinary panic of the caller.
func cpuNeed(what string, s []float32, n int) {
	if len(s) < n {
		panic(cpuShortSlice(what, len(s), n))
	}
}

func cpuShortSlice(what string, have, need int) string {
	return fmt.Sprintf("kernels: cpu: %s has %d elements, need %d", what, have, need)
}

func cpuBadLabel(row, label, classes int) string {
	return fmt.Sprintf("kernels: cpu: row %d: label %d outside [0, %d)", row, label, classes)
}

// CPUKernelPath names the kernels the CPU backend runs on this processor
// and build: "avx512" (with the conv1 kernels), "avx2" (AVX2 and FMA),
// "neon" (arm64) or "go" (plain Go). Every path gives the same bits; the
// name is for reports.
func CPUKernelPath() string { return sgemmBest.name }
