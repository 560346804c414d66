package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dpcnn/dpcnn/kernels"
)

// testCheckpoint is a small but complete checkpoint: a conv net with Adam
// moments for every parameter and a job spec.
func testCheckpoint(t testing.TB) *Checkpoint {
	s := Spec{Name: "tiny", Input: InputShape{Height: 4, Width: 4, Channels: 1}, Classes: 3, Init: "he", Layers: []LayerSpec{
		{Type: LayerConv, Filters: 2, Size: 3, Pad: 1}, {Type: LayerReLU}, {Type: LayerMaxPool, Size: 2},
		{Type: LayerDropout, Ratio: 0.5}, {Type: LayerAffine, Units: 3}, {Type: LayerSoftmax},
	}}
	params := exportTestParams(t, s, 3)
	var slots []Tensor
	for i, p := range params {
		for j, slot := range []string{"m", "v"} {
			d := make([]float32, len(p.Data))
			for k := range d {
				d[k] = float32(i*100+j*10+k) * 0.001
			}
			slots = append(slots, Tensor{Name: p.Name + "." + slot, Shape: append([]int(nil), p.Shape...), Data: d})
		}
	}
	return &Checkpoint{
		Spec:           s,
		Optimizer:      OptimizerSpec{Type: OptAdam, LR: 0.001, Beta1: 0.9, Beta2: 0.999, Eps: 1e-7},
		OptimizerState: OptimizerState{Steps: 120, Slots: slots},
		Step:           120,
		Epoch:          2,
		Seed:           math.MaxUint64 - 5, // beyond float64's exact integers
		Params:         params,
		Job:            json.RawMessage(`{"name":"tiny-job","batch":64}`),
	}
}

func encodeCheckpoint(t testing.TB, c *Checkpoint) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteCheckpoint(&buf, c); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, name := range []string{"full", "no slots, no job", "null job"} {
		c := testCheckpoint(t)
		switch name {
		case "no slots, no job":
			c.OptimizerState = OptimizerState{}
			c.Optimizer = OptimizerSpec{Type: OptSGD}
			c.Job = nil
		case "null job":
			c.Job = json.RawMessage(`null`)
		}
		b := encodeCheckpoint(t, c)
		// A reader that returns one byte at a time exercises every
		// short read.
		got, err := ReadCheckpoint(iotest.OneByteReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("%s: read back\n%+v\nwant\n%+v", name, got, c)
		}
		if again := encodeCheckpoint(t, got); !bytes.Equal(again, b) {
			t.Errorf("%s: re-encoding differs", name)
		}
	}
}

func TestCheckpointEveryByteFlip(t *testing.T) {
	b := encodeCheckpoint(t, testCheckpoint(t))
	t.Logf("checkpoint of %d bytes", len(b))
	mut := make([]byte, len(b))
	for i := range b {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			copy(mut, b)
			mut[i] ^= mask
			if c, err := ReadCheckpoint(bytes.NewReader(mut)); err == nil {
				t.Fatalf("byte %d ^ %#02x: read succeeded (step %d)", i, mask, c.Step)
			}
		}
	}
}

func TestCheckpointEveryTruncation(t *testing.T) {
	b := encodeCheckpoint(t, testCheckpoint(t))
	for n := range len(b) {
		_, err := ReadCheckpoint(bytes.NewReader(b[:n]))
		if err == nil || !strings.Contains(err.Error(), "truncated in ") {
			t.Fatalf("first %d of %d bytes: error %v, want truncated", n, len(b), err)
		}
	}
	_, err := ReadCheckpoint(bytes.NewReader(b[:100]))
	want := "checkpoint: truncated in header: want "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("100 bytes: error %v, want prefix %q", err, want)
	}
	_, err = ReadCheckpoint(bytes.NewReader(b[:len(b)-2]))
	if want := "checkpoint: truncated in checksum: want 4 bytes, got 2"; err == nil || err.Error() != want {
		t.Errorf("2 bytes short: error %v, want %q", err, want)
	}
}

func TestCheckpointFraming(t *testing.T) {
	good := encodeCheckpoint(t, testCheckpoint(t))
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "checkpoint: truncated in magic: want 8 bytes, got 0"},
		{"bad magic", []byte("PK\x03\x04 this is a zip file"), `checkpoint: not a dpcnn checkpoint (magic "PK\x03\x04 thi", want "DPCNNCKP")`},
		{"version bump", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[8:], 2)
			return b
		}), "checkpoint: unsupported format version 2 (this build reads version 1)"},
		{"huge header", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[12:], math.MaxUint32)
			return b
		}), "checkpoint: header length 4294967295 exceeds the limit of 16777216 bytes"},
		{"huge payload", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[16:], 4<<28+4)
			return b
		}), "checkpoint: payload length 1073741828 is not 4 × at most 268435456 values"},
		{"odd payload", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[16:], 6)
			return b
		}), "checkpoint: payload length 6 is not"},
		{"payload flip", mutate(func(b []byte) []byte {
			b[len(b)-10] ^= 4
			return b
		}), "checkpoint: checksum mismatch: file says 0x"},
		{"trailing data", append(bytes.Clone(good), 0), "checkpoint: trailing data after the checksum"},
	}
	for _, c := range cases {
		_, err := ReadCheckpoint(bytes.NewReader(c.file))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want prefix %q", c.name, err, c.want)
		}
	}

	// A claim of a 1 GiB payload in a tiny file allocates nothing like it.
	claim := mutate(func(b []byte) []byte {
		binary.LittleEndian.PutUint64(b[16:], 4<<28)
		return b
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadCheckpoint(bytes.NewReader(claim))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "truncated in payload: want 1073741824 bytes") {
		t.Errorf("1 GiB claim: error %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("1 GiB claim in a %d-byte file allocated %d bytes", len(claim), grew)
	}
}

// TestCheckpointResumesNetwork saves a real network and optimizer after a
// training step, restores both from the file into fresh ones, and checks
// that the next step gives bit-identical parameters.
func TestCheckpointResumesNetwork(t *testing.T) {
	s, err := Builtin("lenet")
	if err != nil {
		t.Fatal(err)
	}
	b := kernels.NewReference[float32]()
	const batch = 2
	build := func() (*Network[float32], Optimizer[float32]) {
		net, err := New[float32](s, b, batch)
		if err != nil {
			t.Fatal(err)
		}
		opt, err := NewOptimizer[float32](OptimizerSpec{Type: OptAdam}, net.Params(), Horizon{})
		if err != nil {
			t.Fatal(err)
		}
		return net, opt
	}
	x := make([]float32, batch*s.Input.Height*s.Input.Width*s.Input.Channels)
	for i := range x {
		x[i] = float32(i%17) / 17
	}
	step := func(net *Network[float32], opt Optimizer[float32], n uint64) {
		mustLoss(t, net, x, []int32{3, 8}, []int64{10, 11}, RunContext{Train: true, Seed: 5, Step: n}, 1.0/batch)
		mustBackward(t, net)
		opt.Update(b, net.Params())
	}

	net, opt := build()
	net.InitParams(9)
	step(net, opt, 0)
	saved := &Checkpoint{Spec: s, Optimizer: opt.Spec(), OptimizerState: opt.State(), Step: 1, Seed: 5, Params: net.ExportParams()}
	got, err := ReadCheckpoint(bytes.NewReader(encodeCheckpoint(t, saved)))
	if err != nil {
		t.Fatal(err)
	}

	resumed, ropt := build()
	if err := resumed.ImportParams(got.Params); err != nil {
		t.Fatal(err)
	}
	if err := ropt.Restore(got.OptimizerState); err != nil {
		t.Fatal(err)
	}
	step(net, opt, 1)
	step(resumed, ropt, 1)
	for i, p := range net.Params() {
		q := resumed.Params()[i]
		for j := range p.Value {
			if math.Float32bits(p.Value[j]) != math.Float32bits(q.Value[j]) {
				t.Fatalf("after resuming, %s[%d] = %v, uninterrupted run has %v", p.Name, j, q.Value[j], p.Value[j])
			}
		}
	}
}

// craftCheckpoint frames an arbitrary header and payload with a correct
// checksum, to reach the checks that follow it.
func craftCheckpoint(header []byte, payload []float32) []byte {
	var raw []byte
	for _, v := range payload {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	return frameCheckpoint(header, raw)
}

// frameCheckpoint frames a header and raw payload bytes with a correct
// checksum.
func frameCheckpoint(header, payload []byte) []byte {
	b := []byte(checkpointMagic)
	b = binary.LittleEndian.AppendUint32(b, checkpointVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(header)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(payload)))
	b = append(b, header...)
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// splitCheckpoint returns the decoded header and the payload of a valid
// checkpoint file.
func splitCheckpoint(t *testing.T, b []byte) (checkpointHeader, []float32) {
	t.Helper()
	hl := int(binary.LittleEndian.Uint32(b[12:]))
	var hdr checkpointHeader
	if err := json.Unmarshal(b[24:24+hl], &hdr); err != nil {
		t.Fatal(err)
	}
	raw := b[24+hl : len(b)-4]
	payload := make([]float32, len(raw)/4)
	for i := range payload {
		payload[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return hdr, payload
}

func TestCheckpointContents(t *testing.T) {
	good := encodeCheckpoint(t, testCheckpoint(t))
	craft := func(f func(h *checkpointHeader, p []float32) []float32) []byte {
		h, p := splitCheckpoint(t, good)
		p = f(&h, p)
		hb, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		return craftCheckpoint(hb, p)
	}
	nParams := 0
	for _, p := range testCheckpoint(t).Params {
		nParams += len(p.Data)
	}
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"sanity", craft(func(h *checkpointHeader, p []float32) []float32 { return p }), ""},
		{"nan", craft(func(h *checkpointHeader, p []float32) []float32 {
			p[17] = float32(math.NaN())
			return p
		}), "checkpoint: parameter conv1.W holds NaN at index 17"},
		{"inf in slot", craft(func(h *checkpointHeader, p []float32) []float32 {
			p[nParams+3] = float32(math.Inf(1))
			return p
		}), "checkpoint: optimizer slot conv1.W.m holds +Inf at index 3"},
		{"duplicate", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Slots[1].Name = h.Slots[0].Name
			return p
		}), `checkpoint: duplicate tensor name "conv1.W.m"`},
		{"shape vs spec", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Params[0].Shape = []int{3, 3, 2, 1}
			return p
		}), "checkpoint: parameter conv1.W: shape [3 3 2 1], the spec wants [3 3 1 2]"},
		{"param order", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Params[2].Name, h.Params[3].Name = "affine1.b", "affine1.W"
			h.Params[2].Shape, h.Params[3].Shape = []int{3}, []int{8, 3}
			return append(append(append(p[:20:20], p[44:47]...), p[20:44]...), p[47:]...)
		}), "checkpoint: parameter 2 is affine1.b, the spec wants affine1.W"},
		{"missing param", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Params = h.Params[:3]
			h.Slots = nil
			return p[:nParams-3]
		}), "checkpoint: 3 parameters, the spec has 4"},
		{"spec", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Spec.Classes = 4
			return p
		}), "checkpoint: model: spec: layer 4 (affine1): gives 3 features to softmax, want classes 4"},
		{"orphan slot", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Slots[0].Name = "conv9.W.m"
			return p
		}), "checkpoint: optimizer slot 0 is conv9.W.m [3 3 1 2], optimizer adam wants conv1.W.m [3 3 1 2]"},
		{"slots of another optimizer", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Optimizer = OptimizerSpec{Type: OptMomentum}
			return p
		}), "checkpoint: 8 optimizer slots, optimizer momentum keeps 4"},
		{"bad optimizer", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Optimizer.Type = "rmsprop"
			return p
		}), `checkpoint: model: optimizer: unknown type "rmsprop"`},
		{"slot shape", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Slots[0].Shape = []int{18}
			return p
		}), "checkpoint: optimizer slot 0 is conv1.W.m [18], optimizer adam wants conv1.W.m [3 3 1 2]"},
		{"payload longer", craft(func(h *checkpointHeader, p []float32) []float32 { return append(p, 1) }), "checkpoint: payload holds"},
		{"payload shorter", craft(func(h *checkpointHeader, p []float32) []float32 { return p[:len(p)-1] }), "checkpoint: optimizer slot affine1.b.v: shape [3] needs 3 values, the payload has 2 left"},
		{"zero dim", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Params[1].Shape = []int{0}
			return p
		}), "checkpoint: parameter conv1.b: shape [0] out of range"},
		{"overflowing shape", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Params[1].Shape = []int{1 << 20, 1 << 20, 1 << 30}
			return p
		}), "checkpoint: parameter conv1.b: shape [1048576 1048576 1073741824] out of range"},
		{"negative step", craft(func(h *checkpointHeader, p []float32) []float32 {
			h.Step = -1
			return p
		}), "checkpoint: negative counter: step -1"},
		{"not canonical", craftCheckpoint(append(good[24:24+binary.LittleEndian.Uint32(good[12:])], ' '), splitPayload(t, good)), "checkpoint: header: not in canonical form"},
		{"unknown field", craftCheckpoint(bytes.Replace(good[24:24+binary.LittleEndian.Uint32(good[12:])], []byte(`"step":`), []byte(`"steps":1,"step":`), 1), splitPayload(t, good)), "checkpoint: header: not in canonical form"},
		{"bad json", craftCheckpoint([]byte(`{"spec":`), nil), "checkpoint: header: unexpected end of JSON input"},
	}
	for _, c := range cases {
		_, err := ReadCheckpoint(bytes.NewReader(c.file))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want prefix %q", c.name, err, c.want)
		}
	}
}

func splitPayload(t *testing.T, b []byte) []float32 {
	_, p := splitCheckpoint(t, b)
	return p
}

func TestWriteCheckpointRefuses(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *Checkpoint)
		want string
	}{
		{"nan", func(c *Checkpoint) { c.Params[2].Data[5] = float32(math.NaN()) }, "checkpoint: parameter affine1.W holds NaN at index 5"},
		{"length", func(c *Checkpoint) { c.Params[1].Data = c.Params[1].Data[:1] }, "checkpoint: parameter conv1.b: 1 values for shape [2] (2)"},
		{"spec", func(c *Checkpoint) { c.Spec.Layers[0].Filters = 3 }, "checkpoint: parameter conv1.W: shape [3 3 1 2], the spec wants [3 3 1 3]"},
		{"bad job", func(c *Checkpoint) { c.Job = json.RawMessage(`{"a":`) }, "checkpoint: encode header: "},
		{"nan lr", func(c *Checkpoint) { c.Optimizer.LR = math.NaN() }, "checkpoint: model: optimizer adam: lr NaN"},
	}
	for _, c := range cases {
		ck := testCheckpoint(t)
		c.edit(ck)
		var buf bytes.Buffer
		err := WriteCheckpoint(&buf, ck)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want prefix %q", c.name, err, c.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: wrote %d bytes", c.name, buf.Len())
		}
	}
	// A failing writer's error is returned with context.
	errDisk := errors.New("disk full")
	err := WriteCheckpoint(failingWriter{errDisk}, testCheckpoint(t))
	if !errors.Is(err, errDisk) || !strings.HasPrefix(err.Error(), "checkpoint: write: ") {
		t.Errorf("failing writer: error %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// FuzzReadCheckpoint checks that no input makes ReadCheckpoint panic and that
// whatever it accepts is exactly what WriteCheckpoint makes of the result.
func FuzzReadCheckpoint(f *testing.F) {
	good := encodeCheckpoint(f, testCheckpoint(f))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:30])
	flipped := bytes.Clone(good)
	flipped[40] ^= 0x20
	f.Add(flipped)
	f.Add([]byte{})
	f.Add([]byte(checkpointMagic))
	f.Add(craftCheckpoint([]byte(`{}`), nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ReadCheckpoint(bytes.NewReader(b))
		if err != nil {
			if c != nil {
				t.Fatalf("error %v with a checkpoint", err)
			}
			return
		}
		var again bytes.Buffer
		if err := WriteCheckpoint(&again, c); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again.Bytes(), b) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}

// FuzzCheckpointContents fuzzes what lies behind the checksum, which random
// mutations of a whole file almost never get past: the header and payload
// are framed with a correct checksum, and the same properties must hold.
func FuzzCheckpointContents(f *testing.F) {
	good := encodeCheckpoint(f, testCheckpoint(f))
	hl := 24 + binary.LittleEndian.Uint32(good[12:])
	f.Add(good[24:hl], good[hl:len(good)-4])
	f.Add([]byte(`{}`), []byte{})
	f.Add(bytes.Replace(good[24:hl], []byte(`"classes":3`), []byte(`"classes":4`), 1), good[hl:len(good)-4])
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		b := frameCheckpoint(header, payload)
		c, err := ReadCheckpoint(bytes.NewReader(b))
		if err != nil {
			if c != nil {
				t.Fatalf("error %v with a checkpoint", err)
			}
			return
		}
		var again bytes.Buffer
		if err := WriteCheckpoint(&again, c); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again.Bytes(), b) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}
