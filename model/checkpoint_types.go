package model

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
)

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

// ParamsSHA256 is the SHA-256, in lowercase hex, of the parameters: each
// tensor's name and shape, then the little-endian bits of every value, in
// order. Two runs trained the same parameters exactly when the hashes are
// equal; `cnnctl status` shows it for every checkpoint so that users can
// compare runs without downloading them.
func (c *Checkpoint) ParamsSHA256() string {
	h := sha256.New()
	var b [4]byte
	for _, p := range c.Params {
		fmt.Fprintf(h, "%s%v;", p.Name, p.Shape)
		for _, v := range p.Data {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Average returns the moving average of the parameters the checkpoint's
// optimizer keeps (OptimizerSpec.EMA), as tensors named like them, or nil
// when it keeps none.
func (c *Checkpoint) Average() []Tensor {
	if c.Optimizer.EMA.Decay == 0 {
		return nil
	}
	names := slotNames(c.Optimizer)
	per := len(names)
	if per == 0 || len(c.OptimizerState.Slots) != per*len(c.Params) {
		return nil // ReadCheckpoint refuses such a file; this is a hand-made one
	}
	out := make([]Tensor, len(c.Params))
	for i, p := range c.Params {
		s := c.OptimizerState.Slots[i*per+per-1]
		out[i] = Tensor{Name: p.Name, Shape: s.Shape, Data: s.Data}
	}
	return out
}

// ModelParams returns the parameters that are the job's model: the moving
// average when the job evaluates it (EMASpec.Evaluate), else the raw
// parameters. Evaluation, export and prediction read these.
func (c *Checkpoint) ModelParams() []Tensor {
	if c.Optimizer.EMA.Evaluate {
		if avg := c.Average(); avg != nil {
			return avg
		}
	}
	return c.Params
}
