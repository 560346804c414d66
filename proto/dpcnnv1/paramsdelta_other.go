//go:build noasm || !amd64

package dpcnnv1

// deltaAsm says whether the byte kernels run the assembly: never here.
const deltaAsm = false

func splitPlanes(planes *[4][]byte, base, next []float32) { splitPlanesGo(planes, base, next) }
func mergePlanes(params []float32, planes *[4][]byte)     { mergePlanesGo(params, planes) }
func countNonzero(p []byte) int                           { return countNonzeroGo(p) }
func markNonzero(bitmap, p []byte)                        { markNonzeroGo(bitmap, p) }
func appendNonzero(dst, p []byte, nonzero int) []byte     { return appendNonzeroGo(dst, p, nonzero) }
func expandMarked(dst, bitmap, values []byte)             { expandMarkedGo(dst, bitmap, values) }
