package model

import "encoding/json"

// Checkpoint is a training run frozen at a step boundary: enough to resume
// it bit for bit or to use the model. Encoded by WriteCheckpoint and decoded
// by ReadCheckpoint.
type Checkpoint struct {
	Spec           Spec
	Optimizer      OptimizerSpec
	OptimizerState OptimizerState
	Step           int64  // optimizer steps applied
	Epoch          int64  // epochs completed
	Seed           uint64 // the job's seed
	Params         []Tensor
	// Job is the job spec the run was started from, as JSON, if any.
	Job json.RawMessage
}
