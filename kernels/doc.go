// Package kernels holds the numeric primitives of a training step behind one
// interface, Backend, with several implementations: Reference (written the
// obvious way, to check the others), CPU (GEMM on all cores: on AVX-512 an
// implicit GEMM that reads patches where they lie, elsewhere im2col and
// GEMM, the same bits either way) and, on GPU hosts, CUDA.
//
// # Tensors and devices
//
// A Backend's methods take host slices. A network keeps its tensors on the
// backend's Device instead (DeviceOf), which has the same primitives on
// Tensors: handles to memory the device owns, allocated with Alloc, filled
// and read with Upload and Download, released with Free. The choice is one
// interface per side rather than one for both:
//
//   - the CPU and reference backends compute in host memory: their Device
//     is OnHost, whose tensors are plain slices (Tensor.Host) and whose
//     every operation is the Backend method of the same name on them, so a
//     network on them copies nothing, allocates nothing per step and
//     computes exactly the bits it computed on slices;
//   - a backend with memory of its own (CUDA) provides its own Device:
//     tensors in device memory (Device.Memory), every operation launched on
//     them where they are, so a training step moves only its inputs and
//     results. Its Backend methods on slices stay, uploading into scratch
//     buffers and running the same launchers, for callers that hold host
//     slices (the optimizers' updates of the coordinator's parameters) and
//     for the conformance suite.
//
// Backend stays the one interface that every primitive is specified and
// tested on (package kernelstest, whose TestDevice runs the same suite on a
// Device), and package model builds one network, on Device, that runs on
// every backend.
//
// Device operations return no error: a device that can fail latches the
// first failure (of an allocation, copy, launch or argument), skips the work
// issued after it and returns it from Sync, which a network calls at the end
// of every pass. Backend methods panic on arguments that break their
// contract (a programming error) and, on CUDA, on a device failure, since
// they have no error result.
//
// # Data layout
//
// Every tensor is plain data: a flat slice in row-major order plus the sizes
// that describe it, passed explicitly. Activations are NHWC: element
// (n, h, w, c) of a batch of N images of H×W pixels with C channels is at
// index ((n·H + h)·W + w)·C + c. NHWC is chosen because the im2col GEMM of a
// convolution produces its output already in NHWC (one row per output pixel,
// one column per filter), so no transpose is ever needed between layers. A
// fully connected activation is the same layout with H = W = 1: N rows of C
// features, so flattening an NHWC activation is free (features in h, w, c
// order).
//
// Convolution filters are stored HWIO: a (KH·KW·C) × OC row-major matrix whose
// row (kh·KW + kw)·C + c holds the weights of input channel c at filter tap
// (kh, kw) for every output channel — exactly the B operand of the im2col
// GEMM. Affine weights are In × Out row-major (the book's W), so y = x·W + b.
//
// # Conventions
//
// Callers pass every destination; no method allocates its result. Backward
// methods overwrite their outputs (they do not accumulate). Parameter
// gradients are sums over the batch; SoftmaxCrossEntropy scales the gradient it
// starts from, so the caller chooses between a mean (scale 1/N) and a sum
// (scale 1) — the distributed trainer sums micro-batches and divides once.
//
// # Same bits on every processor
//
// The CPU backend picks its kernels by the processor's features
// (golang.org/x/sys/cpu): AVX-512, AVX2 with FMA, NEON on arm64, or plain Go
// (also every build with -tags noasm). They give bit-identical results, so
// workers of any generation or architecture can share a job: every sum of
// products is one chain of single-precision fused multiply-adds in an order
// fixed by the shapes alone (see sgemmMicroGo), which the Go loops compute
// exactly (fma32: the FMADDS instruction on arm64, an exact emulation
// elsewhere); every choice that could change an order (block sizes, k
// blocks, which kernel handles a layer) depends only on the shapes or is
// proved not to change bits; the float64 kernels (softmax, sigmoid, LRN,
// batch normalisation, optimizers) use exp, log and pow written to give the
// same bits everywhere (mathfn.go; square roots and divisions are correctly
// rounded everywhere already) and round every product that feeds a sum, so
// that no compiler fuses it. TestCPUPathsAgree compares the paths a processor has, primitive
// by primitive; TestSameBitsEveryPath in package model compares trained
// parameters with golden hashes in every build and, on amd64, in children
// with the faster kernels switched off through GODEBUG.
//
// A Backend value may keep scratch space and is not safe for concurrent use;
// give each goroutine its own. Backends are generic over the element type so
// the reference backend can also run in float64, which is what the gradient
// checks of package model use.
package kernels
