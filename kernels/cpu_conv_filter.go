package kernels

// The filter gradient's k blocks. dW (K×OC) = colᵀ·dy sums over every
// output pixel of a block; where the shape allows the implicit filter
// kernels (cpu_conv_filter_implicit.go: a filter row of whole 12-row
// tiles, OC whole 16-column slivers), a large K sums each block's pixel
// rows in k blocks of cpuFilterBlockK, small enough that the block's
// slice of x stays in L2 while every tile of dW reads it, rather than in
// the GEMM's own (sgemmBlockK). The k blocks fix the order of the sums, so
// every path (the implicit kernels, or im2col and Sgemm on AVX2 and plain
// Go) splits the same way, decided by the shape alone.

// cpuFilterKC is the most pixel rows (k steps) one k block of a k-blocked
// filter gradient sums: 128 rows of dy and of the block's image stay in L2
// while the 48 tiles of conv6's K = 576 read them. (It was chosen for a
// path that packed those patches into 48 slivers, 300 KiB, before the
// implicit kernels read them in place.)
const cpuFilterKC = 128

// cpuFilterKBlocked reports whether the filter gradient of plan p sums
// each block's pixel rows in k blocks of cpuFilterBlockK rather than the
// GEMM's own (sgemmBlockK): K and the floats of one filter row whole 12-row
// tiles, OC whole 16-column slivers, K above cpuKMajorMaxK. It depends on
// the shape alone, as everything that changes bits must; which path then
// runs depends on the processor and changes nothing.
func cpuFilterKBlocked(g ConvGeom, p cpuConvPlan) bool {
	return !p.direct && p.k > cpuKMajorMaxK && p.k%cpuTileRows == 0 && (g.KW*g.C)%cpuTileRows == 0 && g.OC%16 == 0
}

// cpuFilterBlockK returns the k block for a block of rows pixel rows: rows
// split into equal blocks of at most cpuFilterKC.
func cpuFilterBlockK(rows int) int {
	blocks := (rows + cpuFilterKC - 1) / cpuFilterKC
	return (rows + blocks - 1) / blocks
}
