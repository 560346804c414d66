//go:build arm64

package kernels

// fma32 returns a·b + c rounded once to float32. On arm64 the compiler
// fuses this expression into one FMADDS instruction (arm64 has no
// arithmetic on memory operands, so no load folding gets in the way, as it
// does on amd64 with GOAMD64=v3); TestFMA32 and TestSgemmMidpoints check
// that it did.
func fma32(a, b, c float32) float32 { return a*b + c }

// fma32Fused reports that fma32 is the hardware instruction.
const fma32Fused = true
