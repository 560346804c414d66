//go:build !amd64 || noasm

package kernels

// cpuKernelPaths lists the kernel paths of this build: plain Go only.
func cpuKernelPaths() []cpuKernelPath {
	return []cpuKernelPath{{name: "go", gemm: sgemmGo}}
}

func (cpuKernelPath) use() (restore func()) { return func() {} }
