package dataset

import (
	"slices"
	"testing"
)

// syntheticSet is n images of rows×cols with label i mod 10.
func syntheticSet(t testing.TB, n, rows, cols int) *Set {
	pixels := make([]uint8, 0, n*rows*cols)
	labels := make([]uint8, n)
	for i := 0; i < n; i++ {
		for j := 0; j < rows*cols; j++ {
			pixels = append(pixels, uint8(i*31+j*7))
		}
		labels[i] = uint8(i % 10)
	}
	s, err := NewSet("synthetic", &Images{N: n, Rows: rows, Cols: cols, Pixels: pixels}, labels, 10)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFill(t *testing.T) {
	s := syntheticSet(t, 50, 6, 5)
	indices := []int32{7, 0, 49, 7}
	size := 30
	x := make([]float32, len(indices)*size)
	labels := make([]int32, len(indices))
	samples := make([]int64, len(indices))
	want := make([]float32, size)
	for _, aug := range []Augment{{}, fullAugment} {
		s.Fill(indices, aug, 3, 2, x, labels, samples)
		for i, idx := range indices {
			aug.Apply(want, s.Image(int(idx)), 6, 5, 3, 2, int64(idx))
			assertSame(t, "Fill", x[i*size:(i+1)*size], want)
			if labels[i] != int32(idx%10) || samples[i] != int64(idx) {
				t.Errorf("sample %d: label %d, index %d", i, labels[i], samples[i])
			}
		}
		// The same sample twice in a batch gets the same input.
		if !slices.Equal(x[:size], x[3*size:]) {
			t.Error("a sample repeated in a batch differs")
		}
	}
	// Splitting a batch between calls changes nothing, and labels and
	// sample indices are optional.
	whole := make([]float32, len(x))
	s.Fill(indices, fullAugment, 3, 2, whole, nil, nil)
	part := make([]float32, len(x))
	s.Fill(indices[:1], fullAugment, 3, 2, part[:size], nil, nil)
	s.Fill(indices[1:], fullAugment, 3, 2, part[size:], nil, nil)
	if !slices.Equal(whole, part) {
		t.Error("split batch differs")
	}
}

func TestFillDoesNotAllocate(t *testing.T) {
	s := syntheticSet(t, 64, 28, 28)
	indices := make([]int32, 16)
	for i := range indices {
		indices[i] = int32(3 * i)
	}
	x := make([]float32, 16*784)
	labels, samples := make([]int32, 16), make([]int64, 16)
	if n := testing.AllocsPerRun(5, func() { s.Fill(indices, fullAugment, 1, 0, x, labels, samples) }); n != 0 {
		t.Errorf("%v allocations per Fill", n)
	}
}

func TestFillPanics(t *testing.T) {
	s := syntheticSet(t, 4, 2, 2)
	for name, f := range map[string]func(){
		"short x":       func() { s.Fill([]int32{0, 1}, Augment{}, 0, 0, make([]float32, 7), nil, nil) },
		"short labels":  func() { s.Fill([]int32{0, 1}, Augment{}, 0, 0, make([]float32, 8), make([]int32, 1), nil) },
		"short samples": func() { s.Fill([]int32{0, 1}, Augment{}, 0, 0, make([]float32, 8), nil, make([]int64, 3)) },
		"index":         func() { s.Fill([]int32{0, 4}, Augment{}, 0, 0, make([]float32, 8), nil, nil) },
		"negative":      func() { s.Fill([]int32{-1}, Augment{}, 0, 0, make([]float32, 4), nil, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// A real batch: NHWC with C = 1, inputs in [0, 1], MNIST's ink where
// expected.
func TestFillMNIST(t *testing.T) {
	_, train, _ := loadRealMNIST(t)
	p, err := NewPlan(train.N, 64, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	indices := make([]int32, 64)
	NewOrder(p).Step(0, 0, indices)
	x := make([]float32, 64*28*28)
	labels := make([]int32, 64)
	train.Fill(indices, fullAugment, 1, 0, x, labels, nil)
	for i := range indices {
		ink := 0.0
		for _, v := range x[i*784 : (i+1)*784] {
			if v < 0 || v > 1 {
				t.Fatalf("sample %d: input %v", i, v)
			}
			ink += float64(v)
		}
		// An MNIST digit covers roughly 10 to 200 pixels' worth of ink.
		if ink < 10 || ink > 300 {
			t.Errorf("sample %d (index %d, label %d): %v pixels of ink", i, indices[i], labels[i], ink)
		}
	}
}

func BenchmarkFill64(b *testing.B) {
	for _, bc := range []struct {
		name string
		aug  Augment
	}{{"plain", Augment{}}, {"affine", Augment{RotateDeg: 15, ShiftPx: 1.5, CropPad: 2, Scale: 0.1}}, {"elastic", fullAugment}} {
		b.Run(bc.name, func(b *testing.B) {
			s := syntheticSet(b, 1000, 28, 28)
			indices := Permutation(1, 0, 1000)[:64]
			x := make([]float32, 64*784)
			labels, samples := make([]int32, 64), make([]int64, 64)
			for i := 0; b.Loop(); i++ {
				s.Fill(indices, bc.aug, 1, int64(i), x, labels, samples)
			}
		})
	}
}
