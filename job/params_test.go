package job

import (
	"slices"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/model"
)

// The flat vector is the tensors in order, concatenated, both ways, for
// values and gradients; a vector of the wrong length is refused.
func TestFlatVector(t *testing.T) {
	ps := model.Params[float32]{
		{Name: "a.W", Shape: []int{2, 2}, Value: []float32{1, 2, 3, 4}, Grad: []float32{-1, -2, -3, -4}},
		{Name: "a.b", Shape: []int{2}, Value: []float32{5, 6}, Grad: []float32{-5, -6}},
	}
	flat := make([]float32, 6)
	FlattenValues(flat, ps)
	if want := []float32{1, 2, 3, 4, 5, 6}; !slices.Equal(flat, want) {
		t.Fatalf("FlattenValues = %v, want %v", flat, want)
	}
	FlattenGrads(flat, ps)
	if want := []float32{-1, -2, -3, -4, -5, -6}; !slices.Equal(flat, want) {
		t.Fatalf("FlattenGrads = %v, want %v", flat, want)
	}
	SetValues(ps, []float32{10, 20, 30, 40, 50, 60})
	if !slices.Equal(ps[0].Value, []float32{10, 20, 30, 40}) || !slices.Equal(ps[1].Value, []float32{50, 60}) {
		t.Fatalf("SetValues gave %v and %v", ps[0].Value, ps[1].Value)
	}
	SetGrads(ps, []float32{2, 4, 6, 8, 10, 12}, 0.5)
	if !slices.Equal(ps[0].Grad, []float32{1, 2, 3, 4}) || !slices.Equal(ps[1].Grad, []float32{5, 6}) {
		t.Fatalf("SetGrads gave %v and %v", ps[0].Grad, ps[1].Grad)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "5 values for 6 parameters") {
			t.Errorf("SetValues of a short vector: %v, want a panic naming both lengths", r)
		}
	}()
	SetValues(ps, make([]float32, 5))
}
