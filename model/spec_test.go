package model

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

const lenetJSON = `{
  "name": "lenet",
  "input": {"height": 28, "width": 28, "channels": 1},
  "classes": 10,
  "init": "xavier",
  "layers": [
    {"type": "conv", "filters": 6, "size": 5, "pad": 2},
    {"type": "sigmoid"},
    {"type": "avgpool", "size": 2},
    {"type": "conv", "filters": 16, "size": 5},
    {"type": "sigmoid"},
    {"type": "avgpool", "size": 2},
    {"type": "affine", "units": 120},
    {"type": "sigmoid"},
    {"type": "affine", "units": 84},
    {"type": "sigmoid"},
    {"type": "affine", "units": 10},
    {"type": "softmax"}
  ]
}`

const lenetYAML = `
name: lenet
input: {height: 28, width: 28, channels: 1}
classes: 10
init: xavier
layers:
  - {type: conv, filters: 6, size: 5, pad: 2}
  - type: sigmoid
  - {type: avgpool, size: 2}
  - type: conv
    filters: 16
    size: 5
  - type: sigmoid
  - {type: avgpool, size: 2}
  - {type: affine, units: 120}
  - type: sigmoid
  - {type: affine, units: 84}
  - type: sigmoid
  - {type: affine, units: 10}
  - type: softmax
`

func TestParseSpecJSONAndYAML(t *testing.T) {
	fromJSON, err := ParseSpec([]byte(lenetJSON))
	if err != nil {
		t.Fatal(err)
	}
	fromYAML, err := ParseSpec([]byte(lenetYAML))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("JSON and YAML give different specs:\n%+v\n%+v", fromJSON, fromYAML)
	}
	builtin, _ := Builtin("lenet")
	if !reflect.DeepEqual(fromJSON, builtin) {
		t.Errorf("parsed spec differs from the built-in lenet:\n%+v\n%+v", fromJSON, builtin)
	}
}

// TestBuiltinRoundTrip checks that every built-in survives JSON encoding
// and ParseSpec unchanged (they travel in job specs and checkpoints).
func TestBuiltinRoundTrip(t *testing.T) {
	for _, name := range BuiltinNames() {
		s, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseSpec(data)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, data)
		}
		if !reflect.DeepEqual(s, back) {
			t.Errorf("%s: round trip changed the spec:\n%+v\n%+v", name, s, back)
		}
	}
}

func TestParseSpecStrict(t *testing.T) {
	for _, c := range []struct{ name, data, want string }{
		{"unknown top-level field", `{"input": {"height": 1, "width": 1, "channels": 2}, "classes": 2, "layers": [{"type": "softmax"}], "colour": 1}`, `unknown field "colour"`},
		{"unknown layer field", "input: {height: 1, width: 1, channels: 2}\nclasses: 2\nlayers:\n  - {type: softmax, filtres: 3}\n", `unknown field "filtres"`},
		{"duplicate field", "classes: 2\nclasses: 3\n", "classes"},
		{"wrong type", `{"classes": "ten"}`, "classes"},
		{"not yaml", "{[", "yaml"},
		{"empty", "", "classes 0"},
	} {
		_, err := ParseSpec([]byte(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "model: spec: ") {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	tiny := `{"input": {"height": 1, "width": 1, "channels": 2}, "classes": 2, "layers": [{"type": "softmax"}]}`
	if _, err := ParseSpec([]byte(tiny)); err != nil {
		t.Errorf("minimal spec: %v", err)
	}
}

// validSpec is a small valid spec that the validation cases break one rule
// at a time.
func validSpec() Spec {
	return Spec{
		Input:   InputShape{Height: 8, Width: 8, Channels: 1},
		Classes: 3,
		Layers: []LayerSpec{
			{Type: LayerConv, Filters: 2, Size: 3},  // 6×6×2
			{Type: LayerMaxPool, Size: 2},           // 3×3×2
			{Type: LayerAffine, Units: 4},           // 4
			{Type: LayerDropout, Ratio: 0.5},        // 4
			{Type: LayerLRN, Size: 3, K: 2},         // 4
			{Type: LayerAffine, Units: 3, Init: ""}, // 3
			{Type: LayerSoftmax},
		},
	}
}

func TestValidate(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	withNorm := validSpec()
	withNorm.Layers[3] = LayerSpec{Type: LayerBatchNorm, Eps: 1e-3, Momentum: 1}
	if err := withNorm.Validate(); err != nil {
		t.Fatalf("valid spec with a batchnorm: %v", err)
	}
	for _, c := range []struct {
		name   string
		change func(s *Spec)
		want   string
	}{
		{"no layers", func(s *Spec) { s.Layers = nil }, "no layers"},
		{"zero input", func(s *Spec) { s.Input.Width = 0 }, "input 8x0x1"},
		{"huge input", func(s *Spec) { s.Input.Height = 1 << 20 }, "input"},
		{"one class", func(s *Spec) { s.Classes = 1 }, "classes 1"},
		{"unknown type", func(s *Spec) { s.Layers[1].Type = "maxpooling" }, `layer 1 (maxpooling1): unknown type "maxpooling"`},
		{"conv without filters", func(s *Spec) { s.Layers[0].Filters = 0 }, "layer 0 (conv1): filters 0"},
		{"conv without size", func(s *Spec) { s.Layers[0].Size = 0 }, "layer 0 (conv1): size 0"},
		{"conv negative stride", func(s *Spec) { s.Layers[0].Stride = -1 }, "layer 0 (conv1): stride -1"},
		{"conv negative pad", func(s *Spec) { s.Layers[0].Pad = -1 }, "layer 0 (conv1): pad -1"},
		{"conv filter too large", func(s *Spec) { s.Layers[0].Size = 9 }, "layer 0 (conv1): 9x9 filter larger than padded input 8x8"},
		{"pool window too large", func(s *Spec) { s.Layers[1].Size = 7 }, "layer 1 (maxpool1): 7x7 window larger than padded input 6x6"},
		{"pool pad as large as window", func(s *Spec) { s.Layers[1].Pad = 2 }, "layer 1 (maxpool1): pad 2"},
		{"pool without size", func(s *Spec) { s.Layers[1].Size = 0 }, "layer 1 (maxpool1): size 0"},
		{"affine units 0", func(s *Spec) { s.Layers[2].Units = 0 }, "layer 2 (affine1): units 0"},
		{"dropout ratio 1", func(s *Spec) { s.Layers[3].Ratio = 1 }, "layer 3 (dropout1): ratio 1"},
		{"dropout ratio negative", func(s *Spec) { s.Layers[3].Ratio = -0.1 }, "layer 3 (dropout1): ratio -0.1"},
		{"lrn k 0", func(s *Spec) { s.Layers[4].K = 0 }, "layer 4 (lrn1): k 0"},
		{"lrn size 0", func(s *Spec) { s.Layers[4].Size = 0 }, "layer 4 (lrn1): size 0"},
		{"lrn negative beta", func(s *Spec) { s.Layers[4].Beta = -1 }, "layer 4 (lrn1): beta -1"},
		{"batchnorm momentum above 1", func(s *Spec) { s.Layers[3] = LayerSpec{Type: LayerBatchNorm, Momentum: 1.5} }, "layer 3 (batchnorm1): momentum 1.5"},
		{"batchnorm negative eps", func(s *Spec) { s.Layers[3] = LayerSpec{Type: LayerBatchNorm, Eps: -1e-5} }, "layer 3 (batchnorm1): eps -1e-05"},
		{"batchnorm eps NaN", func(s *Spec) { s.Layers[3] = LayerSpec{Type: LayerBatchNorm, Eps: math.NaN()} }, "layer 3 (batchnorm1): eps NaN"},
		{"eps on conv", func(s *Spec) { s.Layers[0].Eps = 1e-3 }, `layer 0 (conv1): field "eps" does not apply to conv`},
		{"momentum on dropout", func(s *Spec) { s.Layers[3].Momentum = 0.1 }, `layer 3 (dropout1): field "momentum" does not apply to dropout`},
		{"softmax missing", func(s *Spec) { s.Layers = s.Layers[:6] }, "last layer 5 (affine2) is affine, want softmax"},
		{"softmax not last", func(s *Spec) {
			s.Layers = append(s.Layers[:6:6], LayerSpec{Type: LayerSoftmax}, LayerSpec{Type: LayerSoftmax})
		}, "layer 6 (softmax1): softmax must be the last layer"},
		{"classes differ from last affine", func(s *Spec) { s.Classes = 5 }, "layer 5 (affine2): gives 3 features to softmax, want classes 5"},
		{"classes after pass-through layers", func(s *Spec) {
			s.Layers = append(s.Layers[:3:3], LayerSpec{Type: LayerReLU}, LayerSpec{Type: LayerSoftmax})
		}, "layer 2 (affine1): gives 4 features to softmax, want classes 3"},
		{"bad spec init", func(s *Spec) { s.Init = "glorot" }, `init "glorot"`},
		{"bad layer init", func(s *Spec) { s.Layers[2].Init = "std:-1" }, `layer 2 (affine1): init "std:-1"`},
		{"init std not a number", func(s *Spec) { s.Layers[0].Init = "std:x" }, `layer 0 (conv1): init "std:x"`},
		{"init on relu", func(s *Spec) { s.Layers[1].Init = "he" }, `layer 1 (maxpool1): field "init" does not apply to maxpool`},
		{"units on conv", func(s *Spec) { s.Layers[0].Units = 3 }, `layer 0 (conv1): field "units" does not apply to conv`},
		{"ratio on affine", func(s *Spec) { s.Layers[2].Ratio = 0.5 }, `layer 2 (affine1): field "ratio" does not apply to affine`},
		{"duplicate name", func(s *Spec) { s.Layers[2].Name = "conv1" }, "layer 2 (conv1): name already used by layer 0"},
		{"name clashing with a default", func(s *Spec) { s.Layers[0].Name = "affine2" }, "layer 5 (affine2): name already used by layer 0"},
		{"dotted name", func(s *Spec) { s.Layers[0].Name = "a.b" }, "layer 0 (a.b): name must be"},
		{"activation too large", func(s *Spec) {
			s.Input = InputShape{Height: 1 << 14, Width: 1 << 14, Channels: 1}
		}, "layer 0 (conv1): output 16382x16382x2 has more than 268435456 elements"},
		{"too many parameters", func(s *Spec) {
			s.Input = InputShape{Height: 1 << 14, Width: 1 << 14, Channels: 1}
			s.Layers = []LayerSpec{{Type: LayerAffine, Units: 3}, {Type: LayerSoftmax}}
			s.Layers[0].Units = 1 << 4
			s.Classes = 1 << 4
		}, "layer 0 (affine1): more than 2147483648 parameters"},
	} {
		s := validSpec()
		c.change(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "model: spec: ") {
			t.Errorf("%s: error %q lacks the package prefix", c.name, err)
		}
		if _, err := s.ParamCount(); err == nil {
			t.Errorf("%s: ParamCount of an invalid spec succeeded", c.name)
		}
	}
}

func TestBuiltins(t *testing.T) {
	want := map[string]int{
		// 3·3·(1·16 + 16·16 + 16·32 + 32·32 + 32·64 + 64·64) + 6 conv
		// biases (16+16+32+32+64+64) + 1024·50 + 50 + 50·10 + 10.
		"deep": 123552,
		// 5·5·30 + 30 + 4320·100 + 100 + 100·10 + 10.
		"simple": 433890,
		// 5·5·6 + 6 + 5·5·6·16 + 16 + 400·120 + 120 + 120·84 + 84 + 84·10 + 10.
		"lenet": 61706,
	}
	names := BuiltinNames()
	if len(names) != len(want) {
		t.Fatalf("BuiltinNames() = %v", names)
	}
	for _, name := range names {
		s, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != name {
			t.Errorf("Builtin(%q).Name = %q", name, s.Name)
		}
		n, err := s.ParamCount()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != want[name] {
			t.Errorf("%s: %d parameters, want %d", name, n, want[name])
		}
	}
	_, err := Builtin("alexnet")
	if err == nil || !strings.Contains(err.Error(), `"alexnet"`) || !strings.Contains(err.Error(), "deep, lenet, simple") {
		t.Errorf("unknown built-in: error %v, want one listing the known names", err)
	}
	// Every call gives a spec of its own.
	a, _ := Builtin("deep")
	a.Layers[0].Filters = 99
	if b, _ := Builtin("deep"); b.Layers[0].Filters != 16 {
		t.Error("changing one Builtin result changed the next")
	}
}

// TestDeepShapes checks the shapes of the book's DeepConvNet layer by
// layer, the second convolution pair growing 14×14 to 16×16 with its
// padding of 2.
func TestDeepShapes(t *testing.T) {
	s, _ := Builtin("deep")
	plans, err := s.plan()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, lp := range plans {
		if lp.hasParams() || lp.Spec.Type == LayerMaxPool {
			got = append(got, lp.Name+":"+lp.Out.String())
		}
	}
	want := "conv1:28x28x16 conv2:28x28x16 maxpool1:14x14x16 conv3:14x14x32 conv4:16x16x32 maxpool2:8x8x32 " +
		"conv5:8x8x64 conv6:8x8x64 maxpool3:4x4x64 affine1:1x1x50 affine2:1x1x10"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("shapes\n got %s\nwant %s", g, want)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(lenetJSON))
	f.Add([]byte(lenetYAML))
	for _, name := range BuiltinNames() {
		s, _ := Builtin(name)
		data, _ := json.Marshal(s)
		f.Add(data)
	}
	f.Add([]byte(`{"input": {"height": 65536, "width": 65536, "channels": 65536}, "classes": 2, "layers": [{"type": "conv", "filters": 65536, "size": 65536}, {"type": "softmax"}]}`))
	f.Add([]byte("layers: [{type: lrn, size: 3, k: .nan}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			return
		}
		n, err := s.ParamCount()
		if err != nil || n < 0 {
			t.Fatalf("ParseSpec accepted a spec whose ParamCount is %d, %v", n, err)
		}
	})
}
