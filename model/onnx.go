package model

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX export.
//
// ExportONNX writes a network as a standard ONNX ModelProto (IR version 8,
// opset 13 of the default domain) that any ONNX runtime can load for
// inference. The protobuf is encoded by hand with protowire; the field
// numbers are those of onnx/onnx.proto and are named below.
//
// Layouts. Our activations are NHWC, ONNX's are NCHW, so the exported graph
// takes "input" as float [N, C, H, W] (N symbolic) and the weights are
// converted as they are written:
//   - conv filters from HWIO [KH, KW, C, OC] to OIHW [OC, C, KH, KW];
//   - the first affine layer after a spatial activation: ONNX Flatten of NCHW
//     yields features in (c, h, w) order while our affine weight rows are in
//     (h, w, c) order (we flatten NHWC), so that layer's weight rows are
//     permuted: ONNX row (c·H + h)·W + w is our row (h·W + w)·C + c. No
//     Transpose node is needed at run time.
//
// Dropout is exported in its inference form: the book's dropout (not
// inverted) scales every unit by 1−ratio at test time, written as a Mul by
// that constant; inverted dropout is the identity at test time and emits no
// node.
//
// The graph ends in Softmax(axis=1) whose output is "probabilities"
// [N, classes]; its input is the value "logits", which ONNXOptions can also
// expose as a graph output.
//
// Not exportable (an error, nothing written): conv, pooling or LRN after an
// affine layer, and softmax straight over a spatial activation larger than
// 1×1 — none of the built-in networks does either.

// ONNXOptions tunes ExportONNX.
type ONNXOptions struct {
	// Logits also makes the pre-softmax scores a graph output named
	// "logits" [N, classes].
	Logits bool
	// ProducerVersion is recorded as the model's producer_version.
	ProducerVersion string
}

// Fixed properties of the exported model.
const (
	onnxIRVersion = 8
	onnxOpset     = 13
	onnxProducer  = "dpcnn"
)

// Field numbers of onnx.proto (onnx/onnx, onnx/onnx.proto).
const (
	// ModelProto
	fModelIRVersion       protowire.Number = 1
	fModelProducerName    protowire.Number = 2
	fModelProducerVersion protowire.Number = 3
	fModelGraph           protowire.Number = 7
	fModelOpsetImport     protowire.Number = 8
	// OperatorSetIdProto
	fOpsetDomain  protowire.Number = 1
	fOpsetVersion protowire.Number = 2
	// GraphProto
	fGraphNode        protowire.Number = 1
	fGraphName        protowire.Number = 2
	fGraphInitializer protowire.Number = 5
	fGraphInput       protowire.Number = 11
	fGraphOutput      protowire.Number = 12
	// NodeProto
	fNodeInput     protowire.Number = 1
	fNodeOutput    protowire.Number = 2
	fNodeName      protowire.Number = 3
	fNodeOpType    protowire.Number = 4
	fNodeAttribute protowire.Number = 5
	// AttributeProto
	fAttrName protowire.Number = 1
	fAttrF    protowire.Number = 2
	fAttrI    protowire.Number = 3
	fAttrInts protowire.Number = 8
	fAttrType protowire.Number = 20
	// TensorProto
	fTensorDims     protowire.Number = 1
	fTensorDataType protowire.Number = 2
	fTensorName     protowire.Number = 8
	fTensorRawData  protowire.Number = 9
	// ValueInfoProto
	fValueName protowire.Number = 1
	fValueType protowire.Number = 2
	// TypeProto
	fTypeTensor protowire.Number = 1
	// TypeProto.Tensor
	fTensorTypeElem  protowire.Number = 1
	fTensorTypeShape protowire.Number = 2
	// TensorShapeProto
	fShapeDim protowire.Number = 1
	// TensorShapeProto.Dimension
	fDimValue protowire.Number = 1
	fDimParam protowire.Number = 2
)

// Enum values of onnx.proto.
const (
	onnxAttrFloat = 1 // AttributeProto.FLOAT
	onnxAttrInt   = 2 // AttributeProto.INT
	onnxAttrInts  = 7 // AttributeProto.INTS
	onnxFloat     = 1 // TensorProto.FLOAT
)

// Value names of the graph's inputs and outputs.
const (
	onnxInputName  = "input"
	onnxLogitsName = "logits"
	onnxProbsName  = "probabilities"
)

// ExportONNX writes the network s with parameters params (as in a
// checkpoint: named "<layer>.W"/"<layer>.b", in our layouts) to w as an ONNX
// model. Every parameter the spec implies must be present exactly once with
// the right shape and length, and no other; otherwise nothing is written.
func ExportONNX(w io.Writer, s Spec, params []Tensor, opts ONNXOptions) error {
	layers, err := planSpec(s)
	if err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	byName, err := matchParams(layers, params)
	if err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	g, err := buildONNXGraph(layers, byName)
	if err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	var graph []byte
	for _, n := range g.nodes {
		graph = appendMessageField(graph, fGraphNode, n.encode())
	}
	name := s.Name
	if name == "" {
		name = onnxProducer
	}
	graph = appendStringField(graph, fGraphName, name)
	for _, t := range g.inits {
		graph = appendMessageField(graph, fGraphInitializer, t)
	}
	graph = appendMessageField(graph, fGraphInput, onnxValueInfo(onnxInputName, []int64{-1, int64(s.Input.Channels), int64(s.Input.Height), int64(s.Input.Width)}))
	graph = appendMessageField(graph, fGraphOutput, onnxValueInfo(onnxProbsName, []int64{-1, int64(s.Classes)}))
	if opts.Logits {
		graph = appendMessageField(graph, fGraphOutput, onnxValueInfo(onnxLogitsName, []int64{-1, int64(s.Classes)}))
	}

	var opset []byte
	opset = appendStringField(opset, fOpsetDomain, "")
	opset = appendVarintField(opset, fOpsetVersion, onnxOpset)

	var model []byte
	model = appendVarintField(model, fModelIRVersion, onnxIRVersion)
	model = appendStringField(model, fModelProducerName, onnxProducer)
	if opts.ProducerVersion != "" {
		model = appendStringField(model, fModelProducerVersion, opts.ProducerVersion)
	}
	model = appendMessageField(model, fModelGraph, graph)
	model = appendMessageField(model, fModelOpsetImport, opset)
	if _, err := w.Write(model); err != nil {
		return fmt.Errorf("onnx: write: %w", err)
	}
	return nil
}

// onnxNodeDef is one node before encoding.
type onnxNodeDef struct {
	name, op string
	inputs   []string
	output   string
	attrs    [][]byte // encoded AttributeProtos
}

// onnxGraph collects the nodes and the encoded initializer TensorProtos.
type onnxGraph struct {
	nodes []onnxNodeDef
	inits [][]byte
}

// buildONNXGraph translates the planned layers into one chain of nodes from
// "input" to "probabilities".
func buildONNXGraph(layers []plannedLayer, params map[string]Tensor) (*onnxGraph, error) {
	g := &onnxGraph{}
	cur := onnxInputName
	flat := false // the current value is [N, features] rather than [N, C, H, W]
	emit := func(name, op string, inputs []string, attrs ...[]byte) {
		g.nodes = append(g.nodes, onnxNodeDef{name: name, op: op, inputs: inputs, output: name, attrs: attrs})
		cur = name
	}
	for _, l := range layers {
		in := l.In
		switch l.Type {
		case LayerConv:
			if flat {
				return nil, fmt.Errorf("layer %s: conv after an affine layer cannot be exported", l.Name)
			}
			wt, b := params[l.Name+".W"], params[l.Name+".b"]
			g.inits = append(g.inits,
				onnxTensor(wt.Name, []int{l.Filters, in.C, l.Size, l.Size}, hwioToOIHW(wt.Data, l.Size, l.Size, in.C, l.Filters)),
				onnxTensor(b.Name, b.Shape, b.Data))
			emit(l.Name, "Conv", []string{cur, wt.Name, b.Name},
				onnxIntsAttr("kernel_shape", l.Size, l.Size),
				onnxIntsAttr("strides", l.Stride, l.Stride),
				onnxIntsAttr("pads", l.Pad, l.Pad, l.Pad, l.Pad))
		case LayerReLU:
			emit(l.Name, "Relu", []string{cur})
		case LayerSigmoid:
			emit(l.Name, "Sigmoid", []string{cur})
		case LayerMaxPool, LayerAvgPool:
			if flat {
				return nil, fmt.Errorf("layer %s: pooling after an affine layer cannot be exported", l.Name)
			}
			attrs := [][]byte{
				onnxIntsAttr("kernel_shape", l.Size, l.Size),
				onnxIntsAttr("strides", l.Stride, l.Stride),
				onnxIntsAttr("pads", l.Pad, l.Pad, l.Pad, l.Pad),
			}
			op := "MaxPool"
			if l.Type == LayerAvgPool {
				op = "AveragePool"
				// Padded cells are not counted in a mean, as in
				// kernels.PoolGeom (also ONNX's default; explicit
				// for readers of the model).
				attrs = append(attrs, onnxIntAttr("count_include_pad", 0))
			}
			emit(l.Name, op, []string{cur}, attrs...)
		case LayerLRN:
			if flat {
				return nil, fmt.Errorf("layer %s: lrn after an affine layer cannot be exported", l.Name)
			}
			emit(l.Name, "LRN", []string{cur},
				onnxIntAttr("size", l.Size),
				onnxFloatAttr("alpha", l.Alpha),
				onnxFloatAttr("beta", l.Beta),
				onnxFloatAttr("bias", l.K))
		case LayerBatchNorm:
			// Inference form over axis 1: the channels of NCHW, the
			// features of a flat [N, features] value alike.
			names := make([]string, 0, 5)
			names = append(names, cur)
			for _, pt := range l.Params {
				pv := params[pt.Name]
				g.inits = append(g.inits, onnxTensor(pv.Name, pv.Shape, pv.Data))
				names = append(names, pv.Name)
			}
			emit(l.Name, "BatchNormalization", names, onnxFloatAttr("epsilon", l.batchNormEps()))
		case LayerDropout:
			if l.Inverted || l.Ratio == 0 {
				continue // the identity at test time
			}
			scale := l.Name + ".scale"
			g.inits = append(g.inits, onnxTensor(scale, []int{}, []float32{float32(1 - l.Ratio)}))
			emit(l.Name, "Mul", []string{cur, scale})
		case LayerAffine:
			wt, b := params[l.Name+".W"], params[l.Name+".b"]
			rows := wt.Data
			if !flat {
				emit(l.Name+".flatten", "Flatten", []string{cur}, onnxIntAttr("axis", 1))
				flat = true
				rows = hwcRowsToCHW(wt.Data, in.H, in.W, in.C, l.Units)
			}
			g.inits = append(g.inits,
				onnxTensor(wt.Name, wt.Shape, rows),
				onnxTensor(b.Name, b.Shape, b.Data))
			emit(l.Name, "Gemm", []string{cur, wt.Name, b.Name})
		case LayerSoftmax:
			if !flat {
				if in.H*in.W != 1 {
					return nil, fmt.Errorf("layer %s: softmax over a %dx%d spatial input cannot be exported", l.Name, in.H, in.W)
				}
				emit(l.Name+".flatten", "Flatten", []string{cur}, onnxIntAttr("axis", 1))
			}
			// The value feeding Softmax is renamed "logits". It is the
			// output of the last node so far (there always is one: the
			// input is 4-D, the softmax input 2-D) and nothing else
			// reads it.
			g.nodes[len(g.nodes)-1].output = onnxLogitsName
			g.nodes = append(g.nodes, onnxNodeDef{name: l.Name, op: "Softmax", inputs: []string{onnxLogitsName},
				output: onnxProbsName, attrs: [][]byte{onnxIntAttr("axis", 1)}})
		default:
			return nil, fmt.Errorf("layer %s: unknown type %q", l.Name, l.Type)
		}
	}
	return g, nil
}

// hwioToOIHW converts conv filters from our HWIO layout [KH, KW, C, OC] to
// ONNX's OIHW [OC, C, KH, KW].
func hwioToOIHW(src []float32, kh, kw, c, oc int) []float32 {
	dst := make([]float32, len(src))
	for y := 0; y < kh; y++ {
		for x := 0; x < kw; x++ {
			for ic := 0; ic < c; ic++ {
				for o := 0; o < oc; o++ {
					dst[((o*c+ic)*kh+y)*kw+x] = src[((y*kw+x)*c+ic)*oc+o]
				}
			}
		}
	}
	return dst
}

// hwcRowsToCHW permutes the rows of an [H·W·C, out] affine weight matrix from
// our (h, w, c) feature order to the (c, h, w) order of ONNX Flatten on NCHW.
func hwcRowsToCHW(src []float32, h, w, c, out int) []float32 {
	dst := make([]float32, len(src))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for ch := 0; ch < c; ch++ {
				from := ((y*w + x) * c) + ch
				to := (ch*h+y)*w + x
				copy(dst[to*out:(to+1)*out], src[from*out:(from+1)*out])
			}
		}
	}
	return dst
}

// matchParams checks params against the tensors the planned layers need:
// each present once, with the planned shape and a matching length, and no
// others. It returns them by name.
func matchParams(layers []plannedLayer, params []Tensor) (map[string]Tensor, error) {
	byName := make(map[string]Tensor, len(params))
	for _, p := range params {
		if _, dup := byName[p.Name]; dup {
			return nil, fmt.Errorf("parameter %s given twice", p.Name)
		}
		byName[p.Name] = p
	}
	want := 0
	for _, l := range layers {
		for _, pt := range l.Params {
			want++
			p, ok := byName[pt.Name]
			if !ok {
				return nil, fmt.Errorf("parameter %s missing", pt.Name)
			}
			if !slices.Equal(p.Shape, pt.Shape) {
				return nil, fmt.Errorf("parameter %s: shape %v, spec wants %v", p.Name, p.Shape, pt.Shape)
			}
			if n := shapeElems(pt.Shape); len(p.Data) != n {
				return nil, fmt.Errorf("parameter %s: %d values for shape %v (%d)", p.Name, len(p.Data), p.Shape, n)
			}
		}
	}
	if len(byName) != want {
		for _, p := range params {
			if !plannedParam(layers, p.Name) {
				return nil, fmt.Errorf("parameter %s is not part of the spec", p.Name)
			}
		}
	}
	return byName, nil
}

// plannedParam reports whether name is one of the planned parameters.
func plannedParam(layers []plannedLayer, name string) bool {
	for _, l := range layers {
		for _, pt := range l.Params {
			if pt.Name == name {
				return true
			}
		}
	}
	return false
}

// shapeElems is the number of elements of a shape whose product is known to
// be small (a planned or validated shape).
func shapeElems(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Protobuf encoding helpers.

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessageField(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// encode returns the NodeProto.
func (n onnxNodeDef) encode() []byte {
	var b []byte
	for _, in := range n.inputs {
		b = appendStringField(b, fNodeInput, in)
	}
	b = appendStringField(b, fNodeOutput, n.output)
	b = appendStringField(b, fNodeName, n.name)
	b = appendStringField(b, fNodeOpType, n.op)
	for _, a := range n.attrs {
		b = appendMessageField(b, fNodeAttribute, a)
	}
	return b
}

// onnxIntsAttr is an INTS AttributeProto. Repeated scalars are written
// unpacked, as proto2 (which onnx.proto is) does by default.
func onnxIntsAttr(name string, vs ...int) []byte {
	b := appendStringField(nil, fAttrName, name)
	for _, v := range vs {
		b = appendVarintField(b, fAttrInts, uint64(int64(v)))
	}
	return appendVarintField(b, fAttrType, onnxAttrInts)
}

// onnxIntAttr is an INT AttributeProto.
func onnxIntAttr(name string, v int) []byte {
	b := appendStringField(nil, fAttrName, name)
	b = appendVarintField(b, fAttrI, uint64(int64(v)))
	return appendVarintField(b, fAttrType, onnxAttrInt)
}

// onnxFloatAttr is a FLOAT AttributeProto.
func onnxFloatAttr(name string, v float64) []byte {
	b := appendStringField(nil, fAttrName, name)
	b = protowire.AppendTag(b, fAttrF, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, math.Float32bits(float32(v)))
	return appendVarintField(b, fAttrType, onnxAttrFloat)
}

// onnxTensor is a float TensorProto with raw little-endian data.
func onnxTensor(name string, shape []int, data []float32) []byte {
	var b []byte
	for _, d := range shape {
		b = appendVarintField(b, fTensorDims, uint64(int64(d)))
	}
	b = appendVarintField(b, fTensorDataType, onnxFloat)
	b = appendStringField(b, fTensorName, name)
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	b = protowire.AppendTag(b, fTensorRawData, protowire.BytesType)
	return protowire.AppendBytes(b, raw)
}

// onnxValueInfo is a float tensor ValueInfoProto; a negative dimension is
// the symbolic batch size "N".
func onnxValueInfo(name string, dims []int64) []byte {
	var shape []byte
	for _, d := range dims {
		var dim []byte
		if d < 0 {
			dim = appendStringField(dim, fDimParam, "N")
		} else {
			dim = appendVarintField(dim, fDimValue, uint64(d))
		}
		shape = appendMessageField(shape, fShapeDim, dim)
	}
	tensor := appendVarintField(nil, fTensorTypeElem, onnxFloat)
	tensor = appendMessageField(tensor, fTensorTypeShape, shape)
	typ := appendMessageField(nil, fTypeTensor, tensor)
	b := appendStringField(nil, fValueName, name)
	return appendMessageField(b, fValueType, typ)
}

// plannedLayer is a layer of a validated spec as export and checkpoints
// need it: its LayerSpec with Name and Stride resolved, the shapes it reads
// and writes, and its parameters (names and shapes, no data), weights before
// biases, exactly as a Network built from the spec names them.
type plannedLayer struct {
	LayerSpec
	In, Out shape
	Params  []Tensor
}

// planSpec validates s (Spec.Validate's rules) and resolves every layer.
func planSpec(s Spec) ([]plannedLayer, error) {
	plans, err := s.plan()
	if err != nil {
		return nil, err
	}
	out := make([]plannedLayer, len(plans))
	for i, lp := range plans {
		l := plannedLayer{LayerSpec: lp.Spec, In: lp.In, Out: lp.Out}
		l.Name, l.Stride = lp.Name, lp.Stride
		l.Params = lp.paramTensors()
		out[i] = l
	}
	return out, nil
}
