// Package kernelstest is the conformance suite every kernels.Backend must
// pass, in the manner of gonum's testblas: an implementation runs it with a
// one-line test,
//
//	func TestReferenceConformance(t *testing.T) {
//		kernelstest.TestBackend(t, kernels.NewReference[float32]())
//	}
//
// and each primitive also has its own exported test (TestGemm, TestConv, …)
// for focused runs.
//
// Every check computes the expected result with kernels.Reference in float64
// from the same float32 inputs the backend receives, and accepts an element
// when |got − want| ≤ atol + rtol·|want|, with atol growing with the length
// of the sum behind the element. A failure names the case (geometry, flags,
// scalars) and the first few mismatching elements with their index and
// coordinates.
//
// Beyond the values, the suite checks the contract of package kernels:
// outputs are written only inside their extent (every buffer is surrounded by
// NaN guard bands, and the gaps of a strided matrix are NaN too, and all must
// survive), outputs are overwritten rather than accumulated (they start as
// NaN), inputs are left unchanged, a GEMM with beta = 0 does not read C, and
// the documented in-place forms work. Inputs come from fixed-seed local
// generators, so every run checks the same cases.
//
// It imports kernels alone; only tests import it.
package kernelstest
