package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/philox"
	"google.golang.org/protobuf/encoding/protowire"
)

// Test specs besides the built-ins: a small "simple", and "edge", which
// exercises the awkward cases: a non-square multi-channel input, strided and
// padded windows, an even LRN window, dropout of both kinds on spatial and
// flat activations, a named layer.
func exportTestSpecs() map[string]Spec {
	conv := func(filters, size, pad int) LayerSpec {
		return LayerSpec{Type: LayerConv, Filters: filters, Size: size, Pad: pad}
	}
	relu := LayerSpec{Type: LayerReLU}
	sigmoid := LayerSpec{Type: LayerSigmoid}
	maxpool2 := LayerSpec{Type: LayerMaxPool, Size: 2}
	affine := func(units int) LayerSpec { return LayerSpec{Type: LayerAffine, Units: units} }
	softmax := LayerSpec{Type: LayerSoftmax}
	return map[string]Spec{
		"simple": {Name: "simple", Input: InputShape{Height: 12, Width: 12, Channels: 1}, Classes: 10, Layers: []LayerSpec{
			conv(4, 3, 0), relu, maxpool2, affine(20), relu, affine(10), softmax,
		}},
		"edge": {Name: "edge", Input: InputShape{Height: 9, Width: 7, Channels: 3}, Classes: 4, Layers: []LayerSpec{
			{Type: LayerConv, Filters: 5, Size: 3, Stride: 2, Pad: 1},
			{Type: LayerBatchNorm, Eps: 1e-3},
			{Type: LayerLRN, Size: 4, Alpha: 0.5, Beta: 0.75, K: 2},
			{Type: LayerMaxPool, Size: 3, Stride: 2, Pad: 1},
			{Type: LayerAvgPool, Size: 2, Stride: 1, Pad: 1},
			{Type: LayerDropout, Ratio: 0.3},
			sigmoid,
			affine(7),
			{Type: LayerBatchNorm, Name: "bn-flat"},
			{Type: LayerDropout, Ratio: 0.4, Inverted: true},
			relu,
			{Type: LayerAffine, Name: "head", Units: 4},
			softmax,
		}},
	}
}

// exportTestParams draws every parameter of s uniformly in ±√(6/fan_in)
// (biases in ±0.1) from philox streams keyed by seed.
func exportTestParams(t testing.TB, s Spec, seed uint64) []Tensor {
	t.Helper()
	layers, err := planSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	var ps []Tensor
	for _, l := range layers {
		for _, p := range l.Params {
			n := shapeElems(p.Shape)
			bound, offset := 0.1, 0.0
			switch {
			case len(p.Shape) > 1:
				bound = math.Sqrt(6 / float64(n/p.Shape[len(p.Shape)-1]))
			case strings.HasSuffix(p.Name, bnGamma):
				bound, offset = 0.5, 1 // scales in 1 ± 0.5
			case strings.HasSuffix(p.Name, bnVar):
				bound, offset = 0.4, 0.6 // variances in [0.2, 1]
			}
			st := philox.NewStream(seed, uint32(len(ps)), 0, 0)
			data := make([]float32, n)
			for i := range data {
				data[i] = float32(offset + (2*st.Uniform(uint32(i))-1)*bound)
			}
			ps = append(ps, Tensor{Name: p.Name, Shape: slices.Clone(p.Shape), Data: data})
		}
	}
	return ps
}

func TestPlanSpecShapes(t *testing.T) {
	// The book's SimpleConvNet on MNIST.
	s := Spec{Input: InputShape{Height: 28, Width: 28, Channels: 1}, Classes: 10, Layers: []LayerSpec{
		{Type: LayerConv, Filters: 30, Size: 5}, {Type: LayerReLU}, {Type: LayerMaxPool, Size: 2},
		{Type: LayerAffine, Units: 100}, {Type: LayerReLU}, {Type: LayerAffine, Units: 10}, {Type: LayerSoftmax},
	}}
	layers, err := planSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range layers {
		for _, p := range l.Params {
			got = append(got, fmt.Sprint(p.Name, p.Shape))
		}
	}
	want := []string{"conv1.W[5 5 1 30]", "conv1.b[30]", "affine1.W[4320 100]", "affine1.b[100]", "affine2.W[100 10]", "affine2.b[10]"}
	if !slices.Equal(got, want) {
		t.Errorf("params %v, want %v", got, want)
	}
	if o := layers[2].Out; o != (shape{12, 12, 30}) {
		t.Errorf("maxpool1 output %v, want 12x12x30", o)
	}
	if n := layers[2].Name; n != "maxpool1" || layers[2].Stride != 2 {
		t.Errorf("layer 3 is %s stride %d, want maxpool1 stride 2", n, layers[2].Stride)
	}

	if _, err := planSpec(Spec{Input: s.Input, Classes: 9, Layers: s.Layers}); err == nil {
		t.Errorf("planSpec accepted a spec that Validate refuses")
	}
}

// pbField is one decoded protobuf field.
type pbField struct {
	num protowire.Number
	typ protowire.Type
	v   uint64 // varint or fixed32
	b   []byte // bytes
}

// pbParse decodes one message's fields, failing the test on malformed input.
func pbParse(t *testing.T, b []byte) []pbField {
	t.Helper()
	var fs []pbField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := pbField{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		fs = append(fs, f)
	}
	return fs
}

func pbAll(fs []pbField, num protowire.Number) []pbField {
	var out []pbField
	for _, f := range fs {
		if f.num == num {
			out = append(out, f)
		}
	}
	return out
}

func pbOne(t *testing.T, fs []pbField, num protowire.Number) pbField {
	t.Helper()
	all := pbAll(fs, num)
	if len(all) != 1 {
		t.Fatalf("field %d occurs %d times, want once", num, len(all))
	}
	return all[0]
}

func pbStrings(fs []pbField, num protowire.Number) []string {
	var out []string
	for _, f := range pbAll(fs, num) {
		out = append(out, string(f.b))
	}
	return out
}

func pbInts(fs []pbField, num protowire.Number) []int {
	var out []int
	for _, f := range pbAll(fs, num) {
		out = append(out, int(int64(f.v)))
	}
	return out
}

// parsedModel is the part of an exported model the structure test checks.
type parsedModel struct {
	irVersion     int
	producer      string
	opsetDomain   string
	opsetVersion  int
	ops           []string
	nodes         map[string][]pbField // by node name
	inits         map[string][]int     // initializer dims by name
	initData      map[string][]float32
	inputs        map[string][]string // value info dims ("N" or a number)
	outputs       map[string][]string
	outputOrder   []string
	nodeOutputs   []string
	softmaxInputs []string
}

func parseExport(t *testing.T, b []byte) parsedModel {
	t.Helper()
	model := pbParse(t, b)
	pm := parsedModel{nodes: map[string][]pbField{}, inits: map[string][]int{}, initData: map[string][]float32{},
		inputs: map[string][]string{}, outputs: map[string][]string{}}
	pm.irVersion = int(pbOne(t, model, fModelIRVersion).v)
	pm.producer = string(pbOne(t, model, fModelProducerName).b)
	opset := pbParse(t, pbOne(t, model, fModelOpsetImport).b)
	pm.opsetDomain = string(pbOne(t, opset, fOpsetDomain).b)
	pm.opsetVersion = int(pbOne(t, opset, fOpsetVersion).v)
	graph := pbParse(t, pbOne(t, model, fModelGraph).b)
	for _, nf := range pbAll(graph, fGraphNode) {
		node := pbParse(t, nf.b)
		op := string(pbOne(t, node, fNodeOpType).b)
		pm.ops = append(pm.ops, op)
		pm.nodes[string(pbOne(t, node, fNodeName).b)] = node
		pm.nodeOutputs = append(pm.nodeOutputs, pbStrings(node, fNodeOutput)...)
		if op == "Softmax" {
			pm.softmaxInputs = pbStrings(node, fNodeInput)
		}
	}
	for _, f := range pbAll(graph, fGraphInitializer) {
		tensor := pbParse(t, f.b)
		name := string(pbOne(t, tensor, fTensorName).b)
		if dt := pbOne(t, tensor, fTensorDataType).v; dt != onnxFloat {
			t.Errorf("initializer %s: data type %d, want FLOAT", name, dt)
		}
		raw := pbOne(t, tensor, fTensorRawData).b
		data := make([]float32, len(raw)/4)
		for i := range data {
			data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		pm.inits[name] = pbInts(tensor, fTensorDims)
		pm.initData[name] = data
	}
	valueInfo := func(f pbField) (string, []string) {
		vi := pbParse(t, f.b)
		typ := pbParse(t, pbOne(t, vi, fValueType).b)
		tensor := pbParse(t, pbOne(t, typ, fTypeTensor).b)
		if et := pbOne(t, tensor, fTensorTypeElem).v; et != onnxFloat {
			t.Errorf("value info: elem type %d, want FLOAT", et)
		}
		var dims []string
		for _, d := range pbAll(pbParse(t, pbOne(t, tensor, fTensorTypeShape).b), fShapeDim) {
			dim := pbParse(t, d.b)
			if p := pbAll(dim, fDimParam); len(p) == 1 {
				dims = append(dims, string(p[0].b))
			} else {
				dims = append(dims, fmt.Sprint(pbOne(t, dim, fDimValue).v))
			}
		}
		return string(pbOne(t, vi, fValueName).b), dims
	}
	for _, f := range pbAll(graph, fGraphInput) {
		name, dims := valueInfo(f)
		pm.inputs[name] = dims
	}
	for _, f := range pbAll(graph, fGraphOutput) {
		name, dims := valueInfo(f)
		pm.outputs[name] = dims
		pm.outputOrder = append(pm.outputOrder, name)
	}
	return pm
}

// pbAttr returns a node's attribute by name.
func pbAttr(t *testing.T, node []pbField, name string) []pbField {
	t.Helper()
	for _, f := range pbAll(node, fNodeAttribute) {
		a := pbParse(t, f.b)
		if string(pbOne(t, a, fAttrName).b) == name {
			return a
		}
	}
	t.Fatalf("no attribute %s", name)
	return nil
}

func TestExportONNXStructure(t *testing.T) {
	s := exportTestSpecs()["edge"]
	params := exportTestParams(t, s, 7)
	var buf bytes.Buffer
	if err := ExportONNX(&buf, s, params, ONNXOptions{Logits: true, ProducerVersion: "test"}); err != nil {
		t.Fatal(err)
	}
	pm := parseExport(t, buf.Bytes())
	if pm.irVersion != 8 || pm.producer != "dpcnn" || pm.opsetDomain != "" || pm.opsetVersion != 13 {
		t.Errorf("ir %d producer %q opset %q/%d, want 8 dpcnn \"\"/13", pm.irVersion, pm.producer, pm.opsetDomain, pm.opsetVersion)
	}
	wantOps := []string{"Conv", "BatchNormalization", "LRN", "MaxPool", "AveragePool", "Mul", "Sigmoid", "Flatten", "Gemm", "BatchNormalization", "Relu", "Gemm", "Softmax"}
	if !slices.Equal(pm.ops, wantOps) {
		t.Errorf("ops %v, want %v", pm.ops, wantOps)
	}
	wantInits := map[string][]int{
		"conv1.W": {5, 3, 3, 3}, "conv1.b": {5},
		"dropout1.scale": nil,
		"affine1.W":      {4 * 3 * 5, 7}, "affine1.b": {7},
		"head.W": {7, 4}, "head.b": {4},
		"batchnorm1.gamma": {5}, "batchnorm1.beta": {5}, "batchnorm1.mean": {5}, "batchnorm1.var": {5},
		"bn-flat.gamma": {7}, "bn-flat.beta": {7}, "bn-flat.mean": {7}, "bn-flat.var": {7},
	}
	if len(pm.inits) != len(wantInits) {
		t.Errorf("initializers %v, want %v", pm.inits, wantInits)
	}
	for name, dims := range wantInits {
		got, ok := pm.inits[name]
		if !ok || !slices.Equal(got, dims) {
			t.Errorf("initializer %s dims %v (present %v), want %v", name, got, ok, dims)
		}
	}
	if got := pm.initData["dropout1.scale"]; len(got) != 1 || got[0] != float32(1-0.3) {
		t.Errorf("dropout1.scale = %v, want [0.7]", got)
	}
	if !slices.Equal(pm.inputs["input"], []string{"N", "3", "9", "7"}) || len(pm.inputs) != 1 {
		t.Errorf("inputs %v, want input [N 3 9 7]", pm.inputs)
	}
	if !slices.Equal(pm.outputOrder, []string{"probabilities", "logits"}) ||
		!slices.Equal(pm.outputs["probabilities"], []string{"N", "4"}) || !slices.Equal(pm.outputs["logits"], []string{"N", "4"}) {
		t.Errorf("outputs %v %v, want probabilities and logits [N 4]", pm.outputOrder, pm.outputs)
	}
	if !slices.Equal(pm.softmaxInputs, []string{"logits"}) || !slices.Contains(pm.nodeOutputs, "logits") {
		t.Errorf("softmax reads %v; node outputs %v", pm.softmaxInputs, pm.nodeOutputs)
	}

	// Attributes.
	conv := pm.nodes["conv1"]
	if k, st, p := pbInts(pbAttr(t, conv, "kernel_shape"), fAttrInts), pbInts(pbAttr(t, conv, "strides"), fAttrInts), pbInts(pbAttr(t, conv, "pads"), fAttrInts); !slices.Equal(k, []int{3, 3}) || !slices.Equal(st, []int{2, 2}) || !slices.Equal(p, []int{1, 1, 1, 1}) {
		t.Errorf("conv1 kernel %v strides %v pads %v", k, st, p)
	}
	if a := pbAttr(t, pm.nodes["avgpool1"], "count_include_pad"); pbOne(t, a, fAttrI).v != 0 || pbOne(t, a, fAttrType).v != onnxAttrInt {
		t.Errorf("avgpool1 count_include_pad attribute %v", a)
	}
	lrn := pm.nodes["lrn1"]
	for name, want := range map[string]float32{"alpha": 0.5, "beta": 0.75, "bias": 2} {
		a := pbAttr(t, lrn, name)
		if got := math.Float32frombits(uint32(pbOne(t, a, fAttrF).v)); got != want || pbOne(t, a, fAttrType).v != onnxAttrFloat {
			t.Errorf("lrn1 %s = %v, want %v", name, got, want)
		}
	}
	if pbOne(t, pbAttr(t, lrn, "size"), fAttrI).v != 4 {
		t.Errorf("lrn1 size wrong")
	}

	// Layouts: conv weights OIHW, first affine rows in (c, h, w) order.
	byName := map[string]Tensor{}
	for _, p := range params {
		byName[p.Name] = p
	}
	w := byName["conv1.W"].Data // HWIO [3,3,3,5]
	oihw := pm.initData["conv1.W"]
	for o := range 5 {
		for c := range 3 {
			for y := range 3 {
				for x := range 3 {
					if got, want := oihw[((o*3+c)*3+y)*3+x], w[((y*3+x)*3+c)*5+o]; got != want {
						t.Fatalf("conv1.W[o=%d c=%d y=%d x=%d] = %v, want %v", o, c, y, x, got, want)
					}
				}
			}
		}
	}
	aw := byName["affine1.W"].Data // rows (h, w, c) over 4x3x5
	chw := pm.initData["affine1.W"]
	for y := range 4 {
		for x := range 3 {
			for c := range 5 {
				for u := range 7 {
					if got, want := chw[((c*4+y)*3+x)*7+u], aw[((y*3+x)*5+c)*7+u]; got != want {
						t.Fatalf("affine1.W row (h=%d w=%d c=%d) unit %d = %v, want %v", y, x, c, u, got, want)
					}
				}
			}
		}
	}
	if !slices.Equal(pm.initData["head.W"], byName["head.W"].Data) {
		t.Errorf("head.W (after a flat input) must not be permuted")
	}

	// Without logits there is one output.
	buf.Reset()
	if err := ExportONNX(&buf, s, params, ONNXOptions{}); err != nil {
		t.Fatal(err)
	}
	if pm := parseExport(t, buf.Bytes()); !slices.Equal(pm.outputOrder, []string{"probabilities"}) {
		t.Errorf("outputs %v, want [probabilities]", pm.outputOrder)
	}
}

func TestExportONNXErrors(t *testing.T) {
	s := exportTestSpecs()["simple"]
	good := exportTestParams(t, s, 1)
	edit := func(f func(ps []Tensor) []Tensor) []Tensor {
		ps := slices.Clone(good)
		return f(ps)
	}
	cases := []struct {
		name   string
		spec   Spec
		params []Tensor
		want   string
	}{
		{"missing", s, edit(func(ps []Tensor) []Tensor { return ps[1:] }), "parameter conv1.W missing"},
		{"extra", s, edit(func(ps []Tensor) []Tensor {
			return append(ps, Tensor{Name: "conv9.W", Shape: []int{1}, Data: []float32{0}})
		}), "parameter conv9.W is not part of the spec"},
		{"duplicate", s, edit(func(ps []Tensor) []Tensor { return append(ps, ps[0]) }), "parameter conv1.W given twice"},
		{"shape", s, edit(func(ps []Tensor) []Tensor {
			ps[0].Shape = []int{3, 3, 2, 2}
			return ps
		}), "parameter conv1.W: shape [3 3 2 2], spec wants [3 3 1 4]"},
		{"length", s, edit(func(ps []Tensor) []Tensor {
			ps[1].Data = ps[1].Data[:3]
			return ps
		}), "parameter conv1.b: 3 values for shape [4]"},
		{"bad spec", Spec{Input: s.Input, Classes: 10}, good, "onnx: model: spec: no layers"},
		{"conv after affine", Spec{Input: InputShape{2, 2, 1}, Classes: 4, Layers: []LayerSpec{
			{Type: LayerAffine, Units: 4}, {Type: LayerConv, Filters: 4, Size: 1}, {Type: LayerSoftmax}}},
			[]Tensor{
				{Name: "affine1.W", Shape: []int{4, 4}, Data: make([]float32, 16)}, {Name: "affine1.b", Shape: []int{4}, Data: make([]float32, 4)},
				{Name: "conv1.W", Shape: []int{1, 1, 4, 4}, Data: make([]float32, 16)}, {Name: "conv1.b", Shape: []int{4}, Data: make([]float32, 4)},
			}, "conv after an affine layer"},
		{"spatial softmax", Spec{Input: InputShape{2, 2, 1}, Classes: 4, Layers: []LayerSpec{{Type: LayerSoftmax}}}, nil, "softmax over a 2x2 spatial input"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		err := ExportONNX(&buf, c.spec, c.params, ONNXOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "onnx: ") {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes on error", c.name, buf.Len())
		}
	}
}

// TestONNXInRuntime checks the exported models with an independent ONNX
// consumer: scripts/verify_onnx.py runs onnx.checker (full check) and
// evaluates each graph with torch.nn.functional, and the probabilities must
// match this file's own float64 evaluation of the spec.
func TestONNXInRuntime(t *testing.T) {
	const python = "/usr/bin/python3"
	script, err := filepath.Abs(filepath.Join("..", "scripts", "verify_onnx.py"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("verification script: %v", err)
	}
	// CI sets DPCNN_REQUIRE_ONNX_RUNTIME=1 so that a missing runtime fails
	// instead of skipping.
	skip := t.Skipf
	if os.Getenv("DPCNN_REQUIRE_ONNX_RUNTIME") != "" {
		skip = t.Fatalf
	}
	if _, err := os.Stat(python); err != nil {
		skip("skipping: %s not found (install python3-onnx python3-numpy python3-torch): %v", python, err)
	}
	if out, err := exec.Command(python, "-c", "import onnx, numpy, torch").CombinedOutput(); err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		skip("skipping: %s cannot import onnx, numpy and torch (apt-get install -y python3-onnx python3-numpy python3-torch): %s",
			python, lines[len(lines)-1])
	}

	dir := t.TempDir()
	var args []string
	for i, name := range []string{"simple", "deep", "lenet", "edge"} {
		s, err := Builtin(name)
		if name == "edge" {
			s, err = exportTestSpecs()[name], nil
		}
		if err != nil {
			t.Fatal(err)
		}
		// Uniform weights of He-like scale rather than the spec's init,
		// so that no network's probabilities are close to uniform.
		params := exportTestParams(t, s, uint64(100+i))
		const n = 3
		in := s.Input
		x := make([]float32, n*in.Height*in.Width*in.Channels) // NHWC
		st := philox.NewStream(uint64(200+i), 0, 0, 0)
		for j := range x {
			x[j] = float32(2*st.Uniform(uint32(j)) - 1)
		}
		probs := networkProbs(t, s, params, n, x)
		// The Network and this file's own evaluator must agree before
		// either is compared with the exported model.
		layers, err := planSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		for j, want := range referenceForward(layers, params, n, x) {
			if math.Abs(probs[j]-want) > 1e-12 {
				t.Fatalf("%s: Network probability %d = %v, reference evaluator %v", name, j, probs[j], want)
			}
		}

		var model bytes.Buffer
		if err := ExportONNX(&model, s, params, ONNXOptions{Logits: i%2 == 0}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		modelPath := filepath.Join(dir, name+".onnx")
		inputPath := filepath.Join(dir, name+"-input.npy")
		probsPath := filepath.Join(dir, name+"-probs.npy")
		writeFile(t, modelPath, model.Bytes())
		nchw := nhwcToNCHW(x, n, in.Height, in.Width, in.Channels)
		// The script also reads raw little-endian float32: one case
		// gives it a raw input, another raw probabilities.
		switch name {
		case "edge":
			inputPath = filepath.Join(dir, name+"-input.f32")
			writeFile(t, inputPath, rawFloat32(nchw))
		default:
			writeFile(t, inputPath, npyFloat32(nchw, n, in.Channels, in.Height, in.Width))
		}
		switch name {
		case "lenet":
			probsPath = filepath.Join(dir, name+"-probs.f32")
			probs32 := make([]float32, len(probs))
			for j, v := range probs {
				probs32[j] = float32(v)
			}
			writeFile(t, probsPath, rawFloat32(probs32))
		default:
			writeFile(t, probsPath, npyFloat64(probs, n, s.Classes))
		}
		args = append(args, modelPath, inputPath, probsPath)
	}
	// A negative control: the simple model against the wrong
	// probabilities (rows rotated) must fail, and only it.
	probs, err := os.ReadFile(args[2])
	if err != nil {
		t.Fatal(err)
	}
	npyPreamble := npyHeaderLen(probs)
	const rowBytes = 10 * 8 // one row of float64 probabilities
	body := probs[npyPreamble:]
	wrong := append(slices.Clone(probs[:npyPreamble]), append(slices.Clone(body[rowBytes:]), body[:rowBytes]...)...)
	wrongPath := filepath.Join(dir, "control-wrong-probs.npy")
	writeFile(t, wrongPath, wrong)
	args = append(args, args[0], args[1], wrongPath)

	out, err := exec.Command(python, append([]string{script}, args...)...).CombinedOutput()
	t.Logf("%s", out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("verify_onnx.py: %v, want exit status 1 from the negative control", err)
	}
	if fails := strings.Count(string(out), ": FAIL: "); fails != 1 || !strings.Contains(string(out), "simple.onnx: FAIL: probabilities differ") {
		t.Errorf("want exactly the negative control to fail, got %d failures", fails)
	}
}

// networkProbs runs a float64 Network on the reference backend at test time
// and returns the softmax of its logits.
func networkProbs(t *testing.T, s Spec, params []Tensor, n int, x []float32) []float64 {
	t.Helper()
	net, err := New[float64](s, kernels.NewReference[float64](), n)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.ImportParams(params); err != nil {
		t.Fatal(err)
	}
	x64 := make([]float64, len(x))
	for i, v := range x {
		x64[i] = float64(v)
	}
	logits := mustForward(t, net, x64, n, nil, RunContext{})
	probs := make([]float64, len(logits))
	for i := range n {
		row := logits[i*s.Classes : (i+1)*s.Classes]
		top, sum := slices.Max(row), 0.0
		for j, v := range row {
			probs[i*s.Classes+j] = math.Exp(v - top)
			sum += probs[i*s.Classes+j]
		}
		for j := range row {
			probs[i*s.Classes+j] /= sum
		}
	}
	return probs
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func nhwcToNCHW(x []float32, n, h, w, c int) []float32 {
	out := make([]float32, len(x))
	for i := range n {
		for y := range h {
			for xx := range w {
				for ch := range c {
					out[((i*c+ch)*h+y)*w+xx] = x[((i*h+y)*w+xx)*c+ch]
				}
			}
		}
	}
	return out
}

// npy encodes a little-endian array in NumPy's .npy format (version 1.0).
func npy(descr string, shape []int, data []byte) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s,), }", descr, strings.Join(dims, ", "))
	// Magic, version and length take 10 bytes; the header ends in a
	// newline and pads the whole preamble to a multiple of 64.
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	b = append(b, header...)
	return append(b, data...)
}

// npyHeaderLen is the length of a .npy file's preamble.
func npyHeaderLen(b []byte) int { return 10 + int(binary.LittleEndian.Uint16(b[8:])) }

func npyFloat32(x []float32, shape ...int) []byte { return npy("<f4", shape, rawFloat32(x)) }

// rawFloat32 is x as little-endian float32 bytes.
func rawFloat32(x []float32) []byte {
	var data []byte
	for _, v := range x {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	return data
}

func npyFloat64(x []float64, shape ...int) []byte {
	var data []byte
	for _, v := range x {
		data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
	}
	return npy("<f8", shape, data)
}

// referenceForward evaluates the network at test time in float64, written
// the obvious way from the layer definitions (NHWC activations, HWIO conv
// weights, (h, w, c) flattening, padding not counted in averages, ONNX LRN
// windows, dropout's test-time scale) and returns the probabilities.
func referenceForward(layers []plannedLayer, params []Tensor, n int, input []float32) []float64 {
	p := map[string][]float32{}
	for _, t := range params {
		p[t.Name] = t.Data
	}
	x := make([]float64, len(input))
	for i, v := range input {
		x[i] = float64(v)
	}
	for _, l := range layers {
		in, o := l.In, l.Out
		at := func(x []float64, s shape, i, y, xx, c int) float64 { return x[((i*s.H+y)*s.W+xx)*s.C+c] }
		y := make([]float64, n*o.H*o.W*o.C)
		switch l.Type {
		case LayerConv:
			w, b := p[l.Name+".W"], p[l.Name+".b"]
			for i := range n {
				for oy := range o.H {
					for ox := range o.W {
						for oc := range o.C {
							sum := float64(b[oc])
							for ky := range l.Size {
								for kx := range l.Size {
									iy, ix := oy*l.Stride-l.Pad+ky, ox*l.Stride-l.Pad+kx
									if iy < 0 || iy >= in.H || ix < 0 || ix >= in.W {
										continue
									}
									for c := range in.C {
										sum += at(x, in, i, iy, ix, c) * float64(w[((ky*l.Size+kx)*in.C+c)*o.C+oc])
									}
								}
							}
							y[((i*o.H+oy)*o.W+ox)*o.C+oc] = sum
						}
					}
				}
			}
		case LayerMaxPool, LayerAvgPool:
			for i := range n {
				for oy := range o.H {
					for ox := range o.W {
						for c := range o.C {
							best, sum, count := math.Inf(-1), 0.0, 0
							for ky := range l.Size {
								for kx := range l.Size {
									iy, ix := oy*l.Stride-l.Pad+ky, ox*l.Stride-l.Pad+kx
									if iy < 0 || iy >= in.H || ix < 0 || ix >= in.W {
										continue
									}
									v := at(x, in, i, iy, ix, c)
									best, sum, count = max(best, v), sum+v, count+1
								}
							}
							if l.Type == LayerMaxPool {
								y[((i*o.H+oy)*o.W+ox)*o.C+c] = best
							} else {
								y[((i*o.H+oy)*o.W+ox)*o.C+c] = sum / float64(count)
							}
						}
					}
				}
			}
		case LayerLRN:
			for px := range n * in.H * in.W {
				row := x[px*in.C : (px+1)*in.C]
				for c := range in.C {
					sq := 0.0
					for j := max(0, c-(l.Size-1)/2); j <= min(in.C-1, c+l.Size/2); j++ {
						sq += row[j] * row[j]
					}
					y[px*in.C+c] = row[c] / math.Pow(l.K+l.Alpha/float64(l.Size)*sq, l.Beta)
				}
			}
		case LayerBatchNorm:
			gamma, beta, mean, vr := p[l.Name+bnGamma], p[l.Name+bnBeta], p[l.Name+bnMean], p[l.Name+bnVar]
			eps := l.batchNormEps()
			for j, v := range x {
				c := j % in.C
				y[j] = float64(gamma[c])*(v-float64(mean[c]))/math.Sqrt(float64(vr[c])+eps) + float64(beta[c])
			}
		case LayerAffine:
			w, b := p[l.Name+".W"], p[l.Name+".b"]
			fanIn := in.H * in.W * in.C
			for i := range n {
				for u := range l.Units {
					sum := float64(b[u])
					for k := range fanIn {
						sum += x[i*fanIn+k] * float64(w[k*l.Units+u])
					}
					y[i*l.Units+u] = sum
				}
			}
		case LayerReLU:
			for j, v := range x {
				y[j] = max(v, 0)
			}
		case LayerSigmoid:
			for j, v := range x {
				y[j] = 1 / (1 + math.Exp(-v))
			}
		case LayerDropout:
			scale := 1 - l.Ratio
			if l.Inverted {
				scale = 1
			}
			for j, v := range x {
				y[j] = v * scale
			}
		case LayerSoftmax:
			classes := in.H * in.W * in.C
			for i := range n {
				row := x[i*classes : (i+1)*classes]
				top := slices.Max(row)
				sum := 0.0
				for j, v := range row {
					y[i*classes+j] = math.Exp(v - top)
					sum += y[i*classes+j]
				}
				for j := range row {
					y[i*classes+j] /= sum
				}
			}
		default:
			panic("referenceForward: layer type " + l.Type)
		}
		x = y
	}
	return x
}
