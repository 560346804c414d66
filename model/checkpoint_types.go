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
