//go:build !arm64

package kernels

// fma32 returns a·b + c rounded once to float32. Here the compiler does not
// fuse multiply-adds (or is not known to), so it is emulated.
func fma32(a, b, c float32) float32 { return fma32Emulated(a, b, c) }

// fma32Fused reports that fma32 is the hardware instruction.
const fma32Fused = false
