// Package backends opens a compute backend by name, for the worker and
// cnnctl: "cpu", "reference", "cuda", or "auto" (CUDA where a device works,
// else the CPU). It is the one place that knows every implementation of
// kernels.Backend[float32], so the mains and the worker need not.
//
// The CUDA backend loads the CUDA libraries at run time through purego,
// which makes a CGO_ENABLED=0 binary dynamically linked (it needs glibc's
// loader, /lib64/ld-linux-x86-64.so.2, at run time). Built with -tags
// nocuda, this package leaves the CUDA backend out and binaries stay fully
// static (for FROM-scratch images); "cuda" then fails and "auto" picks the
// CPU.
//
// It imports kernels and kernels/cuda of this module; nothing imports it but
// the worker, the local cluster and the mains.
package backends
