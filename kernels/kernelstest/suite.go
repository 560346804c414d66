package kernelstest

import (
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
)

// TestBackend runs every test of the suite on b, each as a subtest.
func TestBackend(t *testing.T, b kernels.Backend[float32]) {
	tests := []struct {
		name string
		test func(*testing.T, kernels.Backend[float32])
	}{
		{"Gemm", TestGemm},
		{"Im2Col", TestIm2Col},
		{"Col2Im", TestCol2Im},
		{"Conv", TestConv},
		{"AddBias", TestAddBias},
		{"MaxPool", TestMaxPool},
		{"AvgPool", TestAvgPool},
		{"ReLU", TestReLU},
		{"Sigmoid", TestSigmoid},
		{"Affine", TestAffine},
		{"SoftmaxCrossEntropy", TestSoftmaxCrossEntropy},
		{"Dropout", TestDropout},
		{"LRN", TestLRN},
		{"BatchNorm", TestBatchNorm},
		{"Optimizers", TestOptimizers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, b) })
	}
}
