//go:build !amd64 || noasm

package kernels

// cpuKernelPaths lists the kernel paths of this build: its assembly GEMM
// (NEON on arm64), if any, and plain Go.
func cpuKernelPaths() []cpuKernelPath {
	if sgemmBest != sgemmGo {
		return []cpuKernelPath{{name: sgemmBest.name, gemm: sgemmBest}, {name: "go", gemm: sgemmGo}}
	}
	return []cpuKernelPath{{name: "go", gemm: sgemmGo}}
}

// use makes the backend take path p until restore is called.
func (p cpuKernelPath) use() (restore func()) {
	gemm := sgemmBest
	sgemmBest = p.gemm
	return func() { sgemmBest = gemm }
}
