package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/model"
)

// Spec is one training job.
type Spec struct {
	// Name labels the job's output (checkpoints, logs); informational.
	Name string `json:"name,omitempty"`
	// Network is a built-in network name ("deep", "simple", "lenet").
	Network string `json:"network,omitempty"`
	// NetworkSpec is an inline network; it takes the place of Network.
	NetworkSpec *model.Spec `json:"networkSpec,omitempty"`
	// Optimizer and its hyper-parameters; default Adam with lr 0.001.
	Optimizer model.OptimizerSpec `json:"optimizer"`
	// Epochs to train; Steps, when set, stops earlier.
	Epochs int   `json:"epochs,omitempty"`
	Steps  int64 `json:"steps,omitempty"`
	// Batch is the global batch of one optimizer step; MicroBatch the unit
	// of work a worker computes (Batch must be a multiple of it; default
	// Batch).
	Batch      int `json:"batch"`
	MicroBatch int `json:"microBatch,omitempty"`
	// TrainLimit and TestLimit use only the first N samples of each set
	// (0 = all); for quick runs and tests.
	TrainLimit int `json:"trainLimit,omitempty"`
	TestLimit  int `json:"testLimit,omitempty"`
	// Augment is applied to training samples as a pure function of
	// (Seed, epoch, sample index).
	Augment dataset.Augment `json:"augment"`
	// Seed keys every random draw: initial weights, epoch permutations,
	// augmentation and dropout masks.
	Seed uint64 `json:"seed"`
	// EvalEvery evaluates on the test set every N epochs (default 1; the
	// last epoch is always evaluated); CheckpointEvery writes a checkpoint
	// every N epochs (default 1; the end of the job always writes one).
	EvalEvery       int `json:"evalEvery,omitempty"`
	CheckpointEvery int `json:"checkpointEvery,omitempty"`

	// How the job copes with its workers; neither changes its result.
	// MinWorkers pauses training (the job waits, saying why) while fewer
	// workers are live (default 1). MaxWorkers, when set, gives work to at
	// most that many of the live workers, the earliest to join (a
	// benchmark's worker count on a bigger cluster). Deadline, when set, is how long a
	// worker may keep an assignment before a copy goes to another worker,
	// as a Go duration ("30s"); unset, it adapts to each worker: 4 times
	// the time its queue should take at its measured speed, at least 2 s.
	MinWorkers int    `json:"minWorkers,omitempty"`
	MaxWorkers int    `json:"maxWorkers,omitempty"`
	Deadline   string `json:"deadline,omitempty"`
}

// DeadlineDuration is Deadline parsed; 0 when unset (or invalid: Validate
// says so).
func (s Spec) DeadlineDuration() time.Duration {
	d, err := time.ParseDuration(s.Deadline)
	if err != nil {
		return 0
	}
	return d
}

// Defaults used when a field is zero.
const (
	DefaultNetwork = "deep"
	DefaultEpochs  = 20
	DefaultBatch   = 100
)

// WithDefaults returns the spec with every zero field that has a default
// filled in.
func (s Spec) WithDefaults() Spec {
	if s.Network == "" && s.NetworkSpec == nil {
		s.Network = DefaultNetwork
	}
	if s.Optimizer.Type == "" {
		s.Optimizer.Type = model.OptAdam
	}
	s.Optimizer = s.Optimizer.WithDefaults()
	if s.Epochs == 0 && s.Steps == 0 {
		s.Epochs = DefaultEpochs
	}
	if s.Batch == 0 {
		s.Batch = DefaultBatch
	}
	if s.MicroBatch == 0 {
		s.MicroBatch = s.Batch
	}
	if s.EvalEvery == 0 {
		s.EvalEvery = 1
	}
	if s.CheckpointEvery == 0 {
		s.CheckpointEvery = 1
	}
	return s
}

// Model returns the job's network spec: the inline one, or the built-in
// one it names.
func (s Spec) Model() (model.Spec, error) {
	if s.NetworkSpec != nil {
		return *s.NetworkSpec, nil
	}
	return model.Builtin(s.Network)
}

// Validate checks every rule and reports each broken one, joined, so a user
// fixes a job file in one pass. Call it on WithDefaults' result.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.NetworkSpec != nil && s.Network != "" {
		bad("job: network %q and networkSpec are both set: give one", s.Network)
	}
	if net, err := s.Model(); err != nil {
		bad("job: %w", err)
	} else if err := net.Validate(); err != nil {
		bad("job: networkSpec: %w", err)
	}
	if err := s.Optimizer.Validate(); err != nil {
		bad("job: optimizer: %w", err)
	} else if w := s.Optimizer.Schedule.WarmupEpochs; s.Epochs > 0 && w >= float64(s.Epochs) {
		bad("job: optimizer: schedule warmupEpochs %v: must be shorter than the job's %d epochs", w, s.Epochs)
	}
	if s.Epochs < 0 {
		bad("job: epochs %d: must not be negative", s.Epochs)
	}
	if s.Steps < 0 {
		bad("job: steps %d: must not be negative", s.Steps)
	}
	if s.Epochs == 0 && s.Steps == 0 {
		bad("job: neither epochs nor steps is set: nothing to train")
	}
	if s.Batch < 1 {
		bad("job: batch %d: must be at least 1", s.Batch)
	}
	if s.MicroBatch < 1 {
		bad("job: microBatch %d: must be at least 1", s.MicroBatch)
	} else if s.MicroBatch > s.Batch {
		bad("job: microBatch %d is larger than batch %d", s.MicroBatch, s.Batch)
	} else if s.Batch%s.MicroBatch != 0 {
		bad("job: batch %d is not a multiple of microBatch %d", s.Batch, s.MicroBatch)
	}
	if s.TrainLimit < 0 || s.TestLimit < 0 {
		bad("job: trainLimit %d, testLimit %d: must not be negative", s.TrainLimit, s.TestLimit)
	}
	if s.TrainLimit > 0 && s.TrainLimit < s.Batch {
		bad("job: trainLimit %d is smaller than one batch of %d", s.TrainLimit, s.Batch)
	}
	if err := s.Augment.Validate(); err != nil {
		bad("job: augment: %w", err)
	}
	if s.EvalEvery < 0 || s.CheckpointEvery < 0 {
		bad("job: evalEvery %d, checkpointEvery %d: must not be negative", s.EvalEvery, s.CheckpointEvery)
	}
	if s.MinWorkers < 0 {
		bad("job: minWorkers %d: must not be negative", s.MinWorkers)
	}
	if s.MaxWorkers < 0 || (s.MaxWorkers > 0 && s.MaxWorkers < max(s.MinWorkers, 1)) {
		bad("job: maxWorkers %d: must be at least minWorkers (%d) and 1, or 0 for no limit", s.MaxWorkers, max(s.MinWorkers, 1))
	}
	if s.Deadline != "" {
		if d, err := time.ParseDuration(s.Deadline); err != nil {
			bad("job: deadline %q: not a duration like \"30s\" or \"2m\"", s.Deadline)
		} else if d <= 0 {
			bad("job: deadline %q: must be positive (leave it out for the adaptive deadline)", s.Deadline)
		}
	}
	return errors.Join(errs...)
}

// Parse reads a job spec from YAML or JSON (JSON is YAML), refusing unknown
// fields, fills defaults and validates it.
func Parse(data []byte) (Spec, error) {
	s, err := Decode(data)
	if err != nil {
		return Spec{}, err
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// Decode reads a job spec from YAML or JSON, refusing unknown fields, as
// written: no defaults, no validation (for callers that override fields
// first).
func Decode(data []byte) (Spec, error) {
	var s Spec
	if len(strings.TrimSpace(string(data))) == 0 {
		return Spec{}, errors.New("job: empty job spec")
	}
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return Spec{}, fmt.Errorf("job: %w", err)
	}
	return s, nil
}

// JSON encodes the spec canonically (for checkpoints and the wire).
func (s Spec) JSON() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("job: encode spec: %v", err)) // plain struct: cannot fail
	}
	return b
}
