//go:build !(386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm)

package dpcnnv1

// littleEndian is false here: the machine's byte order (or an unlisted
// architecture's) differs from the wire's, so float32s are converted one by
// one.
const littleEndian = false
