//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package dpcnnv1

// littleEndian says that float32s lie in memory as they travel on the wire,
// so they are encoded and decoded by copying.
const littleEndian = true
