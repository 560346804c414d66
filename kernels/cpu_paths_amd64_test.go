//go:build amd64 && !noasm

package kernels

import "golang.org/x/sys/cpu"

// cpuKernelPaths lists the kernel paths this processor can run, the one the
// backend chooses first: AVX-512 (with the conv1 kernels), AVX2 with FMA,
// and plain Go.
func cpuKernelPaths() []cpuKernelPath {
	var paths []cpuKernelPath
	if cpu.X86.HasAVX512F {
		paths = append(paths, cpuKernelPath{name: "avx512", gemm: sgemmAVX512, conv1: true, avx2: cpu.X86.HasAVX2})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		paths = append(paths, cpuKernelPath{name: "avx2", gemm: sgemmAVX2, avx2: true})
	}
	return append(paths, cpuKernelPath{name: "go", gemm: sgemmGo})
}

// use makes the backend take path p until restore is called.
func (p cpuKernelPath) use() (restore func()) {
	gemm, conv1, avx2 := sgemmBest, cpuHasConv1, cpuHasAVX2
	sgemmBest, cpuHasConv1, cpuHasAVX2 = p.gemm, p.conv1, p.avx2
	return func() { sgemmBest, cpuHasConv1, cpuHasAVX2 = gemm, conv1, avx2 }
}
