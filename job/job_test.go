package job

import (
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	s, err := Parse([]byte("network: simple\nseed: 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Network != "simple" || s.Seed != 7 || s.Epochs != DefaultEpochs || s.Batch != DefaultBatch ||
		s.MicroBatch != DefaultBatch || s.Optimizer.Type != "adam" || s.Optimizer.LR != 0.001 {
		t.Fatalf("defaults not applied: %+v", s)
	}
}

func TestParseJSONAndYAMLAgree(t *testing.T) {
	y, err := Parse([]byte("network: deep\nbatch: 100\nmicroBatch: 25\nepochs: 3\naugment:\n  rotateDeg: 10\n  shiftPx: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Parse([]byte(`{"network":"deep","batch":100,"microBatch":25,"epochs":3,"augment":{"rotateDeg":10,"shiftPx":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(y.JSON()) != string(j.JSON()) {
		t.Fatalf("YAML and JSON differ:\n%s\n%s", y.JSON(), j.JSON())
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct{ spec, want string }{
		{"", "empty job spec"},
		{"network: resnet\n", `unknown built-in network "resnet"`},
		{"netwrok: deep\n", "unknown field"},
		{"batch: 100\nmicroBatch: 30\n", "not a multiple of microBatch 30"},
		{"batch: 10\nmicroBatch: 20\n", "larger than batch 10"},
		{"epochs: -1\n", "epochs -1"},
		{"optimizer: {type: adam, lr: -0.1}\n", "lr"},
		{"optimizer: {type: rmsprop}\n", "rmsprop"},
		{"augment: {rotateDeg: -5}\n", "rotate"},
		{"trainLimit: 50\nbatch: 100\n", "smaller than one batch"},
		{"batch: [1]\n", "cannot unmarshal"},
		{"minWorkers: -2\n", "minWorkers -2"},
		{"maxWorkers: -1\n", "maxWorkers -1"},
		{"minWorkers: 4\nmaxWorkers: 3\n", "maxWorkers 3: must be at least minWorkers (4)"},
		{"deadline: soon\n", `deadline "soon": not a duration`},
		{"deadline: -3s\n", "must be positive"},
	}
	if s, err := Parse([]byte("minWorkers: 3\nmaxWorkers: 3\n")); err != nil || s.MaxWorkers != 3 {
		t.Errorf("minWorkers 3, maxWorkers 3: %+v, %v", s, err)
	}
	if s, err := Parse([]byte("minWorkers: 3\ndeadline: 1m30s\n")); err != nil || s.MinWorkers != 3 || s.DeadlineDuration() != 90*time.Second {
		t.Errorf("minWorkers 3, deadline 1m30s: %+v, %v", s, err)
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.spec))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.spec, err, c.want)
		}
	}
}

func TestValidateReportsEveryRule(t *testing.T) {
	s := Spec{Network: "deep", Batch: -1, MicroBatch: -1, Epochs: -2}.WithDefaults()
	err := s.Validate()
	if err == nil {
		t.Fatal("invalid spec accepted")
	}
	for _, want := range []string{"batch -1", "microBatch -1", "epochs -2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("network: simple\n"))
	f.Add([]byte(`{"network":"deep","batch":100}`))
	f.Add([]byte("networkSpec: {input: {height: 28}}\n"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a spec that Validate refuses: %v", err)
		}
	})
}
