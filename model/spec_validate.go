package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Limits that keep every size computed from a spec far from integer
// overflow; no sensible network comes near them, so a spec that exceeds one
// is refused rather than allowed to allocate absurd buffers.
const (
	maxDim        = 1 << 16 // input sides and channels, filters, units, window sides, strides, pads
	maxActivation = 1 << 28 // elements of one sample's activation at any layer
	maxLayerParam = 1 << 31 // scalar parameters of one layer
)

// DefaultInit is the weight initialisation used when neither the spec nor
// the layer names one.
const DefaultInit = "he"

// shape is the shape of one sample's activation, NHWC without the N.
type shape struct{ H, W, C int }

func (s shape) size() int { return s.H * s.W * s.C }

func (s shape) String() string { return fmt.Sprintf("%dx%dx%d", s.H, s.W, s.C) }

// layerPlan is one layer of a validated spec with everything derived from
// it: its resolved name, its stride after defaults, its input and output
// shapes and, for conv and affine layers, the standard deviation of its
// initial weights.
type layerPlan struct {
	Index   int // position in Spec.Layers
	Spec    LayerSpec
	Name    string
	Stride  int
	In, Out shape
	InitStd float64
}

// hasParams reports whether the layer owns parameters.
func (lp layerPlan) hasParams() bool {
	return len(lp.paramTensors()) > 0
}

// weightShape is the shape of a conv or affine layer's weight: HWIO for
// conv, [In, Out] for affine.
func (lp layerPlan) weightShape() []int {
	if lp.Spec.Type == LayerConv {
		return []int{lp.Spec.Size, lp.Spec.Size, lp.In.C, lp.Spec.Filters}
	}
	return []int{lp.In.size(), lp.Out.C}
}

// Batch-norm parameter suffixes: the scale and shift learnt, then the
// running statistics the optimizer averages (see Param.StatMomentum).
const (
	bnGamma = ".gamma"
	bnBeta  = ".beta"
	bnMean  = ".mean"
	bnVar   = ".var"
)

// paramTensors names the layer's parameters and their shapes, in the order
// a Network holds them (no data): weight then bias for conv and affine
// layers; gamma, beta, running mean and running variance for batch norm.
func (lp layerPlan) paramTensors() []Tensor {
	switch lp.Spec.Type {
	case LayerConv, LayerAffine:
		return []Tensor{
			{Name: lp.Name + ".W", Shape: lp.weightShape()},
			{Name: lp.Name + ".b", Shape: []int{lp.Out.C}},
		}
	case LayerBatchNorm:
		c := []int{lp.Out.C}
		return []Tensor{
			{Name: lp.Name + bnGamma, Shape: c}, {Name: lp.Name + bnBeta, Shape: c},
			{Name: lp.Name + bnMean, Shape: c}, {Name: lp.Name + bnVar, Shape: c},
		}
	}
	return nil
}

// paramCount is the number of scalar parameters of the layer.
func (lp layerPlan) paramCount() int {
	n := 0
	for _, t := range lp.paramTensors() {
		n += shapeElems(t.Shape)
	}
	return n
}

// Validate reports the first rule the spec breaks, naming the layer by its
// index in Layers and its resolved name. A valid spec has a positive input
// shape, at least two classes, known layer types with only the fields that
// apply to them and values in range, shapes that stay non-empty through every
// layer, unique layer names, valid init strings ("he", "xavier", "std:X"),
// exactly one softmax layer, last, and as many features entering it as there
// are classes.
func (s Spec) Validate() error {
	_, err := s.plan()
	return err
}

// ParamCount is the number of scalar parameters of the network the spec
// describes.
func (s Spec) ParamCount() (int, error) {
	plans, err := s.plan()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, lp := range plans {
		n += lp.paramCount()
	}
	return n, nil
}

// plan validates the spec and derives the plan of every layer, softmax
// included.
func (s Spec) plan() ([]layerPlan, error) {
	if s.Classes < 2 || s.Classes > maxDim {
		return nil, fmt.Errorf("model: spec: classes %d: must be in [2, %d]", s.Classes, maxDim)
	}
	if len(s.Layers) == 0 {
		return nil, fmt.Errorf("model: spec: no layers")
	}
	plans, err := planLayers(s.Input, s.Init, s.Layers)
	if err != nil {
		return nil, err
	}
	last := plans[len(plans)-1]
	if last.Spec.Type != LayerSoftmax {
		return nil, fmt.Errorf("model: spec: last layer %d (%s) is %s, want %s", last.Index, last.Name, last.Spec.Type, LayerSoftmax)
	}
	for _, lp := range plans[:len(plans)-1] {
		if lp.Spec.Type == LayerSoftmax {
			return nil, fmt.Errorf("model: spec: layer %d (%s): softmax must be the last layer", lp.Index, lp.Name)
		}
	}
	if f := last.In.size(); f != s.Classes {
		// Name the layer that decided the feature count, not an
		// activation or dropout that merely passes it on.
		from := last
		for i := len(plans) - 2; i >= 0; i-- {
			if t := plans[i].Spec.Type; plans[i].In != plans[i].Out || t == LayerConv || t == LayerAffine {
				from = plans[i]
				break
			}
		}
		return nil, fmt.Errorf("model: spec: layer %d (%s): gives %d features to softmax, want classes %d", from.Index, from.Name, f, s.Classes)
	}
	return plans, nil
}

// planLayers checks each layer on its own and derives the shapes, names
// and init scales, without the rules about softmax and classes (so the tests
// can plan a single layer).
func planLayers(in InputShape, specInit string, layers []LayerSpec) ([]layerPlan, error) {
	cur := shape{in.Height, in.Width, in.Channels}
	if cur.H < 1 || cur.W < 1 || cur.C < 1 || cur.H > maxDim || cur.W > maxDim || cur.C > maxDim {
		return nil, fmt.Errorf("model: spec: input %s: every side must be in [1, %d]", cur, maxDim)
	}
	if _, err := parseInit(specInit); err != nil {
		return nil, fmt.Errorf("model: spec: %w", err)
	}
	plans := make([]layerPlan, len(layers))
	typeCount := map[string]int{}
	nameAt := map[string]int{}
	for i, ls := range layers {
		typeCount[ls.Type]++
		name := ls.Name
		if name == "" {
			name = ls.Type + strconv.Itoa(typeCount[ls.Type])
		}
		lp := layerPlan{Index: i, Spec: ls, Name: name, In: cur}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("model: spec: layer %d (%s): %s", i, name, fmt.Sprintf(format, args...))
		}
		if !knownLayerType(ls.Type) {
			return nil, fail("unknown type %q (known: %s)", ls.Type, strings.Join(layerTypes, ", "))
		}
		if ls.Name != "" && !validLayerName(ls.Name) {
			return nil, fail("name must be letters, digits, '_' or '-'")
		}
		if j, ok := nameAt[name]; ok {
			return nil, fail("name already used by layer %d", j)
		}
		nameAt[name] = i
		if f := strayField(ls); f != "" {
			return nil, fail("field %q does not apply to %s", f, ls.Type)
		}
		var err error
		lp.Out, lp.Stride, err = layerOutput(ls, cur)
		if err != nil {
			return nil, fail("%v", err)
		}
		if lp.Out.size() > maxActivation {
			return nil, fail("output %s has more than %d elements", lp.Out, maxActivation)
		}
		if ls.Type == LayerConv || ls.Type == LayerAffine {
			init := ls.Init
			if init == "" {
				init = specInit
			}
			kind, err := parseInit(init)
			if err != nil {
				return nil, fail("%v", err)
			}
			fanIn := lp.In.size()
			if ls.Type == LayerConv {
				fanIn = ls.Size * ls.Size * lp.In.C
			}
			lp.InitStd = kind.std(fanIn)
			if n, ok := mulLimit(maxLayerParam, lp.weightShape()...); !ok || n+lp.Out.C > maxLayerParam {
				return nil, fail("more than %d parameters", maxLayerParam)
			}
		}
		plans[i] = lp
		cur = lp.Out
	}
	return plans, nil
}

// layerTypes lists the vocabulary in the order errors print it.
var layerTypes = []string{LayerConv, LayerReLU, LayerSigmoid, LayerMaxPool, LayerAvgPool, LayerAffine, LayerDropout, LayerLRN, LayerBatchNorm, LayerSoftmax}

func knownLayerType(t string) bool {
	for _, k := range layerTypes {
		if k == t {
			return true
		}
	}
	return false
}

// validLayerName keeps names usable as prefixes of the dotted parameter
// and optimizer-slot names ("conv1.W.m").
func validLayerName(name string) bool {
	for _, r := range name {
		ok := r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// strayField returns the JSON name of a field set on a layer whose type
// does not use it, or "" if there is none. A stray field is almost always a
// typo or a misplaced line, so it is refused rather than ignored.
func strayField(ls LayerSpec) string {
	type field struct {
		name  string
		set   bool
		types []string
	}
	conv, pools := LayerConv, []string{LayerMaxPool, LayerAvgPool}
	fields := []field{
		{"filters", ls.Filters != 0, []string{conv}},
		{"size", ls.Size != 0, append([]string{conv, LayerLRN}, pools...)},
		{"stride", ls.Stride != 0, append([]string{conv}, pools...)},
		{"pad", ls.Pad != 0, append([]string{conv}, pools...)},
		{"units", ls.Units != 0, []string{LayerAffine}},
		{"init", ls.Init != "", []string{conv, LayerAffine}},
		{"ratio", ls.Ratio != 0, []string{LayerDropout}},
		{"inverted", ls.Inverted, []string{LayerDropout}},
		{"alpha", ls.Alpha != 0, []string{LayerLRN}},
		{"beta", ls.Beta != 0, []string{LayerLRN}},
		{"k", ls.K != 0, []string{LayerLRN}},
		{"eps", ls.Eps != 0, []string{LayerBatchNorm}},
		{"momentum", ls.Momentum != 0, []string{LayerBatchNorm}},
	}
	for _, f := range fields {
		if !f.set {
			continue
		}
		applies := false
		for _, t := range f.types {
			applies = applies || t == ls.Type
		}
		if !applies {
			return f.name
		}
	}
	return ""
}

// layerOutput checks a layer's own fields against its input shape and
// returns its output shape and resolved stride.
func layerOutput(ls LayerSpec, in shape) (shape, int, error) {
	switch ls.Type {
	case LayerConv:
		switch {
		case ls.Filters < 1 || ls.Filters > maxDim:
			return shape{}, 0, fmt.Errorf("filters %d: must be in [1, %d]", ls.Filters, maxDim)
		case ls.Size < 1 || ls.Size > maxDim:
			return shape{}, 0, fmt.Errorf("size %d: must be in [1, %d]", ls.Size, maxDim)
		case ls.Stride < 0 || ls.Stride > maxDim:
			return shape{}, 0, fmt.Errorf("stride %d: must be in [1, %d] (0 for the default 1)", ls.Stride, maxDim)
		case ls.Pad < 0 || ls.Pad > maxDim:
			return shape{}, 0, fmt.Errorf("pad %d: must be in [0, %d]", ls.Pad, maxDim)
		}
		stride := ls.Stride
		if stride == 0 {
			stride = 1
		}
		ph, pw := in.H+2*ls.Pad, in.W+2*ls.Pad
		if ph < ls.Size || pw < ls.Size {
			return shape{}, 0, fmt.Errorf("%dx%d filter larger than padded input %dx%d (output would be empty)", ls.Size, ls.Size, ph, pw)
		}
		return shape{(ph-ls.Size)/stride + 1, (pw-ls.Size)/stride + 1, ls.Filters}, stride, nil

	case LayerMaxPool, LayerAvgPool:
		switch {
		case ls.Size < 1 || ls.Size > maxDim:
			return shape{}, 0, fmt.Errorf("size %d: must be in [1, %d]", ls.Size, maxDim)
		case ls.Stride < 0 || ls.Stride > maxDim:
			return shape{}, 0, fmt.Errorf("stride %d: must be in [1, %d] (0 for the default, size)", ls.Stride, maxDim)
		case ls.Pad < 0 || ls.Pad >= ls.Size:
			return shape{}, 0, fmt.Errorf("pad %d: must be in [0, size %d)", ls.Pad, ls.Size)
		}
		stride := ls.Stride
		if stride == 0 {
			stride = ls.Size
		}
		ph, pw := in.H+2*ls.Pad, in.W+2*ls.Pad
		if ph < ls.Size || pw < ls.Size {
			return shape{}, 0, fmt.Errorf("%dx%d window larger than padded input %dx%d (output would be empty)", ls.Size, ls.Size, ph, pw)
		}
		return shape{(ph-ls.Size)/stride + 1, (pw-ls.Size)/stride + 1, in.C}, stride, nil

	case LayerAffine:
		if ls.Units < 1 || ls.Units > maxDim {
			return shape{}, 0, fmt.Errorf("units %d: must be in [1, %d]", ls.Units, maxDim)
		}
		return shape{1, 1, ls.Units}, 0, nil

	case LayerDropout:
		if !(ls.Ratio >= 0 && ls.Ratio < 1) {
			return shape{}, 0, fmt.Errorf("ratio %v: must be in [0, 1)", ls.Ratio)
		}
		return in, 0, nil

	case LayerLRN:
		switch {
		case ls.Size < 1 || ls.Size > maxDim:
			return shape{}, 0, fmt.Errorf("size %d: must be in [1, %d]", ls.Size, maxDim)
		case !(ls.Alpha >= 0) || math.IsInf(ls.Alpha, 0):
			return shape{}, 0, fmt.Errorf("alpha %v: must be finite and not negative", ls.Alpha)
		case !(ls.Beta >= 0) || math.IsInf(ls.Beta, 0):
			return shape{}, 0, fmt.Errorf("beta %v: must be finite and not negative", ls.Beta)
		case !(ls.K > 0) || math.IsInf(ls.K, 0):
			return shape{}, 0, fmt.Errorf("k %v: must be finite and positive", ls.K)
		}
		return in, 0, nil

	case LayerBatchNorm:
		switch {
		case !(ls.Eps >= 0) || ls.Eps > 1:
			return shape{}, 0, fmt.Errorf("eps %v: must be in (0, 1] (0 for the default %g)", ls.Eps, DefaultBatchNormEps)
		case !(ls.Momentum >= 0) || ls.Momentum > 1:
			return shape{}, 0, fmt.Errorf("momentum %v: must be in (0, 1] (0 for the default %g)", ls.Momentum, DefaultBatchNormMomentum)
		}
		return in, 0, nil
	}
	// relu, sigmoid, softmax keep the shape.
	return in, 0, nil
}

// mulLimit multiplies non-negative factors, reporting false as soon as the
// product exceeds limit.
func mulLimit(limit int, factors ...int) (int, bool) {
	p := 1
	for _, f := range factors {
		if f != 0 && p > limit/f {
			return 0, false
		}
		p *= f
	}
	return p, true
}

// initKind is a parsed init string.
type initKind struct {
	name  string  // "he", "xavier" or "std"
	fixed float64 // the X of "std:X"
}

func parseInit(s string) (initKind, error) {
	switch s {
	case "":
		return parseInit(DefaultInit)
	case "he":
		return initKind{name: "he"}, nil
	case "xavier":
		return initKind{name: "xavier"}, nil
	}
	if v, ok := strings.CutPrefix(s, "std:"); ok {
		x, err := strconv.ParseFloat(v, 64)
		if err == nil && x > 0 && !math.IsInf(x, 0) {
			return initKind{name: "std", fixed: x}, nil
		}
	}
	return initKind{}, fmt.Errorf("init %q: want he, xavier or std:X with X a positive number", s)
}

// std is the standard deviation of the initial weights of a layer with the
// given fan-in.
func (k initKind) std(fanIn int) float64 {
	switch k.name {
	case "he":
		return math.Sqrt(2 / float64(fanIn))
	case "xavier":
		return math.Sqrt(1 / float64(fanIn))
	}
	return k.fixed
}
