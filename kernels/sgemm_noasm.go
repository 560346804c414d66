//go:build noasm || !(amd64 || arm64)

package kernels

// sgemmKernels lists the kernel families of this build: only the pure-Go one.
func sgemmKernels() []*sgemmKernel { return []*sgemmKernel{sgemmGo} }

// sgemmBest is the kernel family Sgemm uses.
var sgemmBest = sgemmGo
