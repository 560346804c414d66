package model

import "testing"

// mustLoss is net.Loss, failing t on an error.
func mustLoss[T interface{ ~float32 | ~float64 }](t testing.TB, net *Network[T], x []T, labels []int32, samples []int64, rc RunContext, scale T) (float64, int) {
	t.Helper()
	loss, correct, err := net.Loss(x, labels, samples, rc, scale)
	if err != nil {
		t.Fatal(err)
	}
	return loss, correct
}

// mustBackward is net.Backward, failing t on an error.
func mustBackward[T interface{ ~float32 | ~float64 }](t testing.TB, net *Network[T]) {
	t.Helper()
	if err := net.Backward(); err != nil {
		t.Fatal(err)
	}
}

// mustForward is net.Forward, failing t on an error.
func mustForward[T interface{ ~float32 | ~float64 }](t testing.TB, net *Network[T], x []T, batch int, samples []int64, rc RunContext) []T {
	t.Helper()
	logits, err := net.Forward(x, batch, samples, rc)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}
