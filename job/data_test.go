package job

import (
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// specWith is the simple network with one change made by edit, as a job
// that passes Validate.
func specWith(t *testing.T, edit func(*Spec, *model.Spec)) Spec {
	t.Helper()
	net, err := model.Builtin("simple")
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{NetworkSpec: &net, Steps: 5, Batch: 100}
	edit(&s, &net)
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("the spec under test must be valid on its own: %v", err)
	}
	return s
}

// Each rule CheckData adds to Validate refuses a spec that Validate
// accepts, and names the rule and both values.
func TestCheckDataRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Spec, *model.Spec)
		want []string
	}{
		{"classes", func(_ *Spec, n *model.Spec) {
			n.Classes = 2
			n.Layers[len(n.Layers)-2].Units = 2
		}, []string{"network has 2 classes", "labels have 10 (0 to 9)"}},
		{"input height and width", func(_ *Spec, n *model.Spec) { n.Input.Height, n.Input.Width = 32, 32 },
			[]string{"network input 32x32x1", "data set's images, 28x28x1"}},
		{"input channels", func(_ *Spec, n *model.Spec) { n.Input.Channels = 3 },
			[]string{"network input 28x28x3", "28x28x1"}},
		{"parameters on the wire", func(_ *Spec, n *model.Spec) { n.Layers[3].Units = 20000 }, // 4320 inputs × 20000 units
			[]string{"network has 86620790 parameters", "more than the 66830211 that fit one message of 256 MiB"}},
		{"train limit", func(s *Spec, _ *model.Spec) { s.TrainLimit = 70000 },
			[]string{"trainLimit 70000 exceeds the data set's 60000 training samples"}},
		{"test limit", func(s *Spec, _ *model.Spec) { s.TestLimit = 10001 },
			[]string{"testLimit 10001 exceeds the data set's 10000 test samples"}},
		{"spec size", func(_ *Spec, n *model.Spec) { n.Name = strings.Repeat("x", MaxSpecBytes) },
			[]string{"more than the 1048576 a job spec may have"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := specWith(t, tc.edit)
			err := s.CheckData(MNIST)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCheckDataBatchOverData(t *testing.T) {
	s := specWith(t, func(s *Spec, _ *model.Spec) {})
	small := MNIST
	small.TrainLen = 60
	if err := s.CheckData(small); err == nil || !strings.Contains(err.Error(), "batch 100 exceeds the 60 training samples") {
		t.Errorf("batch over a 60-sample set: %v", err)
	}
}

func TestCheckDataAcceptsTheBuiltins(t *testing.T) {
	for _, name := range model.BuiltinNames() {
		s := Spec{Network: name, Epochs: 1}.WithDefaults()
		if err := s.CheckData(MNIST); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestMaxParamsShrinksWithTheBatch(t *testing.T) {
	if MaxParams(100) <= MaxParams(1<<20) || MaxParams(1<<30) != 0 {
		t.Errorf("MaxParams(100) = %d, MaxParams(1<<20) = %d, MaxParams(1<<30) = %d", MaxParams(100), MaxParams(1<<20), MaxParams(1<<30))
	}
}

// The job rules' message limit is the one the transports set.
func TestMaxMessageSizeIsTheWires(t *testing.T) {
	if MaxMessageSize != dpcnnv1.MaxMessageSize {
		t.Errorf("job.MaxMessageSize = %d, dpcnnv1.MaxMessageSize = %d", MaxMessageSize, dpcnnv1.MaxMessageSize)
	}
}

func TestCheckModelData(t *testing.T) {
	net, _ := model.Builtin("lenet")
	if err := CheckModelData(net, MNIST); err != nil {
		t.Fatal(err)
	}
	net.Input.Height = 14
	if err := CheckModelData(net, MNIST); err == nil || !strings.Contains(err.Error(), "network input 14x28x1") {
		t.Errorf("14x28 input: %v", err)
	}
}
