package model

import (
	"fmt"
	"strings"
)

// mnistInput is the input of every built-in network: one 28×28
// grey-scale image (MNIST), told apart into 10 classes.
func mnistInput() InputShape { return InputShape{Height: 28, Width: 28, Channels: 1} }

// BuiltinNames lists the names Builtin accepts, sorted.
func BuiltinNames() []string { return []string{"deep", "lenet", "simple"} }

// Builtin returns the spec of a built-in network: "deep" (the book's
// DeepConvNet), "simple" (the book's SimpleConvNet) or "lenet" (LeNet-5
// style).
// Every call builds a fresh spec, so callers may change what they get.
func Builtin(name string) (Spec, error) {
	switch name {
	case "deep":
		return deepSpec(), nil
	case "simple":
		return simpleSpec(), nil
	case "lenet":
		return lenetSpec(), nil
	}
	return Spec{}, fmt.Errorf("model: unknown built-in network %q (known: %s)", name, strings.Join(BuiltinNames(), ", "))
}

// deepSpec is the book's DeepConvNet (chapter 8): six 3×3 convolutions
// in pairs with ReLU and max pooling after each pair, then affine layers
// with dropout in the book's form, He initialisation. 123,552 parameters.
func deepSpec() Spec {
	conv := func(filters, pad int) LayerSpec {
		return LayerSpec{Type: LayerConv, Filters: filters, Size: 3, Pad: pad}
	}
	relu := LayerSpec{Type: LayerReLU}
	pool := LayerSpec{Type: LayerMaxPool, Size: 2}
	dropout := LayerSpec{Type: LayerDropout, Ratio: 0.5}
	return Spec{
		Name:    "deep",
		Input:   mnistInput(),
		Classes: 10,
		Init:    "he",
		Layers: []LayerSpec{
			conv(16, 1), relu, conv(16, 1), relu, pool,
			conv(32, 1), relu, conv(32, 2), relu, pool, // pad 2 turns 14×14 into 16×16
			conv(64, 1), relu, conv(64, 1), relu, pool, // 4×4×64 = 1024 features
			{Type: LayerAffine, Units: 50}, relu, dropout,
			{Type: LayerAffine, Units: 10}, dropout,
			{Type: LayerSoftmax},
		},
	}
}

// simpleSpec is the book's SimpleConvNet (chapter 7): one 5×5 convolution
// of 30 filters, ReLU, 2×2 max pooling, a hidden affine layer of 100 units,
// initial weights with standard deviation 0.01.
func simpleSpec() Spec {
	return Spec{
		Name:    "simple",
		Input:   mnistInput(),
		Classes: 10,
		Init:    "std:0.01",
		Layers: []LayerSpec{
			{Type: LayerConv, Filters: 30, Size: 5},
			{Type: LayerReLU},
			{Type: LayerMaxPool, Size: 2},
			{Type: LayerAffine, Units: 100},
			{Type: LayerReLU},
			{Type: LayerAffine, Units: 10},
			{Type: LayerSoftmax},
		},
	}
}

// lenetSpec is LeNet-5 as usually rebuilt for 28×28 input: the first
// convolution pads by 2 to see the original 32×32 field, sigmoid
// activations, average pooling, Xavier initialisation.
func lenetSpec() Spec {
	sigmoid := LayerSpec{Type: LayerSigmoid}
	pool := LayerSpec{Type: LayerAvgPool, Size: 2}
	return Spec{
		Name:    "lenet",
		Input:   mnistInput(),
		Classes: 10,
		Init:    "xavier",
		Layers: []LayerSpec{
			{Type: LayerConv, Filters: 6, Size: 5, Pad: 2}, sigmoid, pool,
			{Type: LayerConv, Filters: 16, Size: 5}, sigmoid, pool, // 5×5×16 = 400 features
			{Type: LayerAffine, Units: 120}, sigmoid,
			{Type: LayerAffine, Units: 84}, sigmoid,
			{Type: LayerAffine, Units: 10},
			{Type: LayerSoftmax},
		},
	}
}
