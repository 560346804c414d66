package dpcnnv1_test

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// TestAssignmentRoundTrip sends a training assignment with a parameter blob
// through the wire encoding and checks that every bit comes back.
func TestAssignmentRoundTrip(t *testing.T) {
	params := make([]float32, 1000)
	for i := range params {
		params[i] = float32(i)*0.001 - 0.5
	}
	params[7] = float32(math.Inf(-1))
	params[8] = math.Float32frombits(0x7fa00001) // a signalling NaN with a payload
	msg := &dpcnnv1.CoordinatorMessage{Kind: &dpcnnv1.CoordinatorMessage_Assignment{Assignment: &dpcnnv1.Assignment{
		AssignmentId:  17,
		JobId:         "mnist-deep",
		JobSpecJson:   []byte(`{"network":"deep","batch":100,"microBatch":25}`),
		Epoch:         2,
		Step:          1234,
		ParamsVersion: 1234,
		Params:        dpcnnv1.NewTensor("params", []int{len(params)}, params),
		Work: &dpcnnv1.Assignment_Train{Train: &dpcnnv1.TrainWork{Subtree: &dpcnnv1.Subtree{
			FirstLeaf: 2, LeafCount: 2, Indices: []int32{59999, 0, 3, 4, 5, 6},
		}}},
	}}}

	wire, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	// The blob costs 4 bytes an element plus a few bytes of framing; a
	// repeated float would cost the same here, but decoding it would not be a
	// copy.
	if want := 4*len(params) + 200; len(wire) > want {
		t.Errorf("encoded assignment is %d bytes, want at most %d", len(wire), want)
	}
	var got dpcnnv1.CoordinatorMessage
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(msg, &got) {
		t.Fatalf("round trip changed the message:\n got %v\nwant %v", &got, msg)
	}
	a := got.GetAssignment()
	if a == nil || a.GetTrain() == nil || a.GetEval() != nil {
		t.Fatalf("round trip lost the oneof: %v", &got)
	}
	back := make([]float32, len(params))
	if err := a.GetParams().DecodeInto(back); err != nil {
		t.Fatal(err)
	}
	for i := range params {
		if math.Float32bits(back[i]) != math.Float32bits(params[i]) {
			t.Fatalf("parameter %d came back as %#08x, want %#08x", i, math.Float32bits(back[i]), math.Float32bits(params[i]))
		}
	}
}

// TestWorkResultRoundTrip checks the message that carries gradients back.
func TestWorkResultRoundTrip(t *testing.T) {
	grad := []float32{0.25, -1e-30, 3e38, 0}
	msg := &dpcnnv1.WorkerMessage{Kind: &dpcnnv1.WorkerMessage_Result{Result: &dpcnnv1.WorkResult{
		AssignmentId: 17,
		JobId:        "mnist-deep",
		Outcome: &dpcnnv1.WorkResult_Train{Train: &dpcnnv1.SubtreeGradient{
			FirstLeaf: 2, LeafCount: 2,
			GradientSum:  dpcnnv1.NewTensor("grad", []int{len(grad)}, grad),
			LeafLossSums: []float64{57.5, 61.25},
			Correct:      44,
		}},
		ComputeNanos: 12_345_678,
	}}}
	wire, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var got dpcnnv1.WorkerMessage
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(msg, &got) {
		t.Fatalf("round trip changed the message:\n got %v\nwant %v", &got, msg)
	}
	g := got.GetResult().GetTrain().GetGradientSum()
	back := make([]float32, len(grad))
	if err := g.DecodeInto(back); err != nil {
		t.Fatal(err)
	}
	for i := range grad {
		if back[i] != grad[i] {
			t.Fatalf("gradient %d came back as %v, want %v", i, back[i], grad[i])
		}
	}
}

// TestTruncatedBlobIsRefused checks that a tensor damaged in transit (a
// length that is not a whole number of float32s) is caught by the helpers,
// not silently decoded.
func TestTruncatedBlobIsRefused(t *testing.T) {
	tn := dpcnnv1.NewTensor("params", []int{3}, []float32{1, 2, 3})
	tn.Data = tn.Data[:11]
	wire, err := proto.Marshal(tn)
	if err != nil {
		t.Fatal(err)
	}
	var got dpcnnv1.Tensor
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if err := got.DecodeInto(make([]float32, 3)); err == nil {
		t.Fatal("a tensor of 11 bytes was decoded")
	}
}

// TrainWork's subtree was a repeated field (revision 1) and is a singular
// one of the same number (revision 2): the previous revision's bytes with
// its one subtree read as the subtree, and this revision's bytes are one
// field 1 holding the subtree, which the previous revision reads as a list
// of one.
func TestTrainWorkReadsTheRepeatedRevision(t *testing.T) {
	sub := &dpcnnv1.Subtree{FirstLeaf: 4, LeafCount: 2, Indices: []int32{9, 8, 7, 6}}
	subBytes, err := proto.Marshal(sub)
	if err != nil {
		t.Fatal(err)
	}
	old := protowire.AppendTag(nil, 1, protowire.BytesType) // revision 1: repeated Subtree subtrees = 1, one element
	old = protowire.AppendBytes(old, subBytes)
	var got dpcnnv1.TrainWork
	if err := proto.Unmarshal(old, &got); err != nil || !proto.Equal(got.GetSubtree(), sub) {
		t.Fatalf("revision 1 bytes read as %v, %v; want the subtree %v", got.GetSubtree(), err, sub)
	}

	now, err := proto.Marshal(&dpcnnv1.TrainWork{Subtree: sub})
	if err != nil {
		t.Fatal(err)
	}
	var fields [][]byte
	for b := now; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			t.Fatalf("revision 2 bytes hold field %d of type %d, want field 1 of bytes", num, typ)
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			t.Fatal("revision 2 bytes are malformed")
		}
		fields = append(fields, v)
		b = b[n+m:]
	}
	var back dpcnnv1.Subtree
	if len(fields) != 1 || proto.Unmarshal(fields[0], &back) != nil || !proto.Equal(&back, sub) {
		t.Fatalf("revision 2 bytes hold %d elements of the repeated field, want the one subtree", len(fields))
	}
}
