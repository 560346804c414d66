package model

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
)

// Checkpoint file format, version 1. All integers are little-endian.
//
//	offset    size  field
//	0         8     magic "DPCNNCKP"
//	8         4     format version (uint32, 1)
//	12        4     header length H (uint32, at most 16 MiB)
//	16        8     payload length P (uint64, 4 × total tensor elements)
//	24        H     header: JSON, exactly as encoding/json writes
//	                checkpointHeader (spec, optimizer, step, epoch, seed,
//	                tensor names and shapes, optimizer steps, job)
//	24+H      P     payload: every tensor's float32 values, parameters
//	                then optimizer slots, in header order
//	24+H+P    4     CRC-32C (Castagnoli) of every byte before it
//
// and nothing after. A reader checks the framing and the checksum before it
// looks at the header, so any corruption is reported as such; then it checks
// the header is in canonical form (decoding and re-encoding it gives the same
// bytes, so no field is silently dropped or altered), that the tensors match
// the spec and the payload, and that every value is finite.

// checkpointMagic opens every checkpoint file.
const checkpointMagic = "DPCNNCKP"

// checkpointVersion is the format version this code reads and writes.
const checkpointVersion = 1

// Limits that a checkpoint must respect; a reader refuses a file that
// claims more before allocating anything for it.
const (
	ckptMaxHeaderBytes = 16 << 20 // JSON header
	ckptMaxElements    = 1 << 28  // float32 values over all tensors
	ckptMaxTensors     = 1 << 16  // parameters plus optimizer slots
	ckptMaxRank        = 8        // dimensions of one tensor
	ckptFixedBytes     = 24       // magic, version, header and payload lengths
	ckptChunkBytes     = 1 << 16  // payload read and write granularity
)

var ckptCRCTable = crc32.MakeTable(crc32.Castagnoli)

// checkpointHeader is the JSON header of a checkpoint.
type checkpointHeader struct {
	Spec           Spec            `json:"spec"`
	Optimizer      OptimizerSpec   `json:"optimizer"`
	OptimizerSteps int64           `json:"optimizer_steps"`
	Step           int64           `json:"step"`
	Epoch          int64           `json:"epoch"`
	Seed           uint64          `json:"seed"`
	Params         []tensorEntry   `json:"params"`
	Slots          []tensorEntry   `json:"slots"`
	Job            json.RawMessage `json:"job,omitempty"`
}

// tensorEntry describes one tensor of the payload.
type tensorEntry struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// WriteCheckpoint encodes c to w in the checkpoint format (version 1, see
// the top of this file). It refuses, writing nothing, a checkpoint that
// ReadCheckpoint would refuse: a spec that Spec.Validate refuses, parameters
// other than the spec's (by order, name and shape), an invalid optimizer
// spec, optimizer slots other than the ones Optimizer.State gives for it, a
// tensor whose length does not match its shape, duplicate names, NaN or ±Inf
// values. c.Job, when set, must be valid JSON; it is stored compacted. A
// write error can leave part of the file written; write to a temporary file
// and rename it for atomicity.
func WriteCheckpoint(w io.Writer, c *Checkpoint) error {
	if err := validateCheckpoint(c); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hdr := checkpointHeader{
		Spec:           c.Spec,
		Optimizer:      c.Optimizer,
		OptimizerSteps: c.OptimizerState.Steps,
		Step:           c.Step,
		Epoch:          c.Epoch,
		Seed:           c.Seed,
		Params:         tensorEntries(c.Params),
		Slots:          tensorEntries(c.OptimizerState.Slots),
		Job:            c.Job,
	}
	header, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("checkpoint: encode header: %w", err)
	}
	if len(header) > ckptMaxHeaderBytes {
		return fmt.Errorf("checkpoint: header is %d bytes, more than %d", len(header), ckptMaxHeaderBytes)
	}
	// The header must read back as itself (see ReadCheckpoint); a job
	// that does not (JSON null) is refused here rather than there.
	if _, err := decodeHeader(header); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	elems := 0
	for _, t := range c.Params {
		elems += len(t.Data)
	}
	for _, t := range c.OptimizerState.Slots {
		elems += len(t.Data)
	}

	crc := crc32.New(ckptCRCTable)
	out := io.MultiWriter(w, crc)
	fixed := make([]byte, ckptFixedBytes, ckptFixedBytes+len(header))
	copy(fixed, checkpointMagic)
	binary.LittleEndian.PutUint32(fixed[8:], checkpointVersion)
	binary.LittleEndian.PutUint32(fixed[12:], uint32(len(header)))
	binary.LittleEndian.PutUint64(fixed[16:], 4*uint64(elems))
	if _, err := out.Write(append(fixed, header...)); err != nil {
		return fmt.Errorf("checkpoint: write: %w", err)
	}
	buf := make([]byte, 0, ckptChunkBytes)
	for _, ts := range [][]Tensor{c.Params, c.OptimizerState.Slots} {
		for _, t := range ts {
			for _, v := range t.Data {
				if len(buf) == cap(buf) {
					if _, err := out.Write(buf); err != nil {
						return fmt.Errorf("checkpoint: write: %w", err)
					}
					buf = buf[:0]
				}
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
		}
	}
	if _, err := out.Write(buf); err != nil {
		return fmt.Errorf("checkpoint: write: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return fmt.Errorf("checkpoint: write: %w", err)
	}
	return nil
}

// ReadCheckpoint decodes a checkpoint written by WriteCheckpoint, reading r
// to its end. It fails with a descriptive error, and returns no checkpoint,
// when the input is not a checkpoint, has another format version, is
// truncated, has trailing data or a checksum mismatch, or describes a model
// that is not sound (see WriteCheckpoint). The returned tensors may share one
// backing array; each is capped to its own length.
func ReadCheckpoint(r io.Reader) (*Checkpoint, error) {
	c, err := readCheckpoint(r)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return c, nil
}

func readCheckpoint(r io.Reader) (*Checkpoint, error) {
	crc := crc32.New(ckptCRCTable)
	in := io.TeeReader(r, crc)

	var fixed [ckptFixedBytes]byte
	if err := readSection(in, fixed[:8], "magic"); err != nil {
		return nil, err
	}
	if string(fixed[:8]) != checkpointMagic {
		return nil, fmt.Errorf("not a dpcnn checkpoint (magic %q, want %q)", fixed[:8], checkpointMagic)
	}
	if err := readSection(in, fixed[8:12], "format version"); err != nil {
		return nil, err
	}
	if v := binary.LittleEndian.Uint32(fixed[8:]); v != checkpointVersion {
		return nil, fmt.Errorf("unsupported format version %d (this build reads version %d)", v, checkpointVersion)
	}
	if err := readSection(in, fixed[12:], "section lengths"); err != nil {
		return nil, err
	}
	headerLen := binary.LittleEndian.Uint32(fixed[12:])
	payloadLen := binary.LittleEndian.Uint64(fixed[16:])
	if headerLen > ckptMaxHeaderBytes {
		return nil, fmt.Errorf("header length %d exceeds the limit of %d bytes", headerLen, ckptMaxHeaderBytes)
	}
	if payloadLen%4 != 0 || payloadLen/4 > ckptMaxElements {
		return nil, fmt.Errorf("payload length %d is not 4 × at most %d values", payloadLen, ckptMaxElements)
	}

	// Both sections grow as their bytes arrive, so a short file with a
	// large claimed length allocates no more than its own size.
	var header bytes.Buffer
	if n, err := io.CopyN(&header, in, int64(headerLen)); err != nil {
		return nil, truncated(err, "header", int64(headerLen), n)
	}
	payload, err := readPayload(in, int(payloadLen/4))
	if err != nil {
		return nil, err
	}
	want := crc.Sum32()
	var sum [4]byte
	if err := readSection(r, sum[:], "checksum"); err != nil {
		return nil, err
	}
	if got := binary.LittleEndian.Uint32(sum[:]); got != want {
		return nil, fmt.Errorf("checksum mismatch: file says %#08x, contents give %#08x", got, want)
	}
	var extra [1]byte
	if n, _ := io.ReadFull(r, extra[:]); n > 0 {
		return nil, errors.New("trailing data after the checksum")
	}

	hdr, err := decodeHeader(header.Bytes())
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{
		Spec:           hdr.Spec,
		Optimizer:      hdr.Optimizer,
		OptimizerState: OptimizerState{Steps: hdr.OptimizerSteps},
		Step:           hdr.Step,
		Epoch:          hdr.Epoch,
		Seed:           hdr.Seed,
		Job:            hdr.Job,
	}
	off := 0
	take := func(entries []tensorEntry, what string) ([]Tensor, error) {
		var ts []Tensor
		for _, e := range entries {
			n, err := entryElems(e, what)
			if err != nil {
				return nil, err
			}
			if n > len(payload)-off {
				return nil, fmt.Errorf("%s %s: shape %v needs %d values, the payload has %d left", what, e.Name, e.Shape, n, len(payload)-off)
			}
			ts = append(ts, Tensor{Name: e.Name, Shape: e.Shape, Data: payload[off : off+n : off+n]})
			off += n
		}
		return ts, nil
	}
	if c.Params, err = take(hdr.Params, "parameter"); err != nil {
		return nil, err
	}
	if c.OptimizerState.Slots, err = take(hdr.Slots, "optimizer slot"); err != nil {
		return nil, err
	}
	if off != len(payload) {
		return nil, fmt.Errorf("payload holds %d values, the header describes %d", len(payload), off)
	}
	if err := validateCheckpoint(c); err != nil {
		return nil, err
	}
	return c, nil
}

// readSection fills b from r, naming the section when the input ends early.
func readSection(r io.Reader, b []byte, section string) error {
	n, err := io.ReadFull(r, b)
	if err != nil {
		return truncated(err, section, int64(len(b)), int64(n))
	}
	return nil
}

// truncated describes a read of section that got n of want bytes.
func truncated(err error, section string, want, n int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated in %s: want %d bytes, got %d", section, want, n)
	}
	return fmt.Errorf("read %s: %w", section, err)
}

// readPayload reads n little-endian float32 values.
func readPayload(r io.Reader, n int) ([]float32, error) {
	// Preallocate only what a small file could plausibly hold; beyond
	// that, grow with the data actually read.
	vals := make([]float32, 0, min(n, ckptChunkBytes))
	buf := make([]byte, ckptChunkBytes)
	for len(vals) < n {
		chunk := buf[:min(len(buf), 4*(n-len(vals)))]
		if got, err := io.ReadFull(r, chunk); err != nil {
			return nil, truncated(err, "payload", 4*int64(n), 4*int64(len(vals))+int64(got))
		}
		for i := 0; i < len(chunk); i += 4 {
			vals = append(vals, math.Float32frombits(binary.LittleEndian.Uint32(chunk[i:])))
		}
	}
	return vals, nil
}

// decodeHeader parses a header and checks it is in canonical form.
func decodeHeader(b []byte) (*checkpointHeader, error) {
	var hdr checkpointHeader
	if err := json.Unmarshal(b, &hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	again, err := json.Marshal(&hdr)
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if !bytes.Equal(again, b) {
		return nil, errors.New("header: not in canonical form (unknown, duplicate or altered fields)")
	}
	return &hdr, nil
}

// entryElems checks a tensor entry's shape and returns its element count.
func entryElems(e tensorEntry, what string) (int, error) {
	if len(e.Shape) < 1 || len(e.Shape) > ckptMaxRank {
		return 0, fmt.Errorf("%s %s: rank %d out of range [1, %d]", what, e.Name, len(e.Shape), ckptMaxRank)
	}
	n := 1
	for _, d := range e.Shape {
		if d < 1 || d > ckptMaxElements || n*d > ckptMaxElements {
			return 0, fmt.Errorf("%s %s: shape %v out of range", what, e.Name, e.Shape)
		}
		n *= d
	}
	return n, nil
}

// tensorEntries lists the names and shapes of ts, never nil.
func tensorEntries(ts []Tensor) []tensorEntry {
	es := make([]tensorEntry, len(ts))
	for i, t := range ts {
		es[i] = tensorEntry{Name: t.Name, Shape: t.Shape}
	}
	return es
}

// validateCheckpoint checks everything WriteCheckpoint and ReadCheckpoint
// promise about a checkpoint's contents.
func validateCheckpoint(c *Checkpoint) error {
	if c.Step < 0 || c.Epoch < 0 || c.OptimizerState.Steps < 0 {
		return fmt.Errorf("negative counter: step %d, epoch %d, optimizer steps %d", c.Step, c.Epoch, c.OptimizerState.Steps)
	}
	if n := len(c.Params) + len(c.OptimizerState.Slots); n > ckptMaxTensors {
		return fmt.Errorf("%d tensors, more than %d", n, ckptMaxTensors)
	}
	layers, err := planSpec(c.Spec)
	if err != nil {
		return err
	}
	names := make(map[string]bool, len(c.Params)+len(c.OptimizerState.Slots))
	total := 0
	check := func(t Tensor, what string) error {
		if names[t.Name] {
			return fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		n, err := entryElems(tensorEntry{t.Name, t.Shape}, what)
		if err != nil {
			return err
		}
		if len(t.Data) != n {
			return fmt.Errorf("%s %s: %d values for shape %v (%d)", what, t.Name, len(t.Data), t.Shape, n)
		}
		if total += n; total > ckptMaxElements {
			return fmt.Errorf("more than %d values in all", ckptMaxElements)
		}
		for i, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%s %s holds %v at index %d", what, t.Name, v, i)
			}
		}
		return nil
	}
	for _, t := range c.Params {
		if err := check(t, "parameter"); err != nil {
			return err
		}
	}
	// The parameters are exactly the spec's, in the network's order.
	var want []Tensor
	for _, l := range layers {
		want = append(want, l.Params...)
	}
	if len(c.Params) != len(want) {
		return fmt.Errorf("%d parameters, the spec has %d", len(c.Params), len(want))
	}
	for i, w := range want {
		p := c.Params[i]
		if p.Name != w.Name {
			return fmt.Errorf("parameter %d is %s, the spec wants %s", i, p.Name, w.Name)
		}
		if !slices.Equal(p.Shape, w.Shape) {
			return fmt.Errorf("parameter %s: shape %v, the spec wants %v", p.Name, p.Shape, w.Shape)
		}
	}
	// The slots are exactly those the optimizer keeps (see
	// Optimizer.State): for each parameter in order, one per slot name,
	// shaped like the parameter.
	for _, t := range c.OptimizerState.Slots {
		if err := check(t, "optimizer slot"); err != nil {
			return err
		}
	}
	if err := c.Optimizer.Validate(); err != nil {
		return err
	}
	typ := c.Optimizer.WithDefaults().Type
	slotsPer := slotNames(c.Optimizer)
	if got, want := len(c.OptimizerState.Slots), len(c.Params)*len(slotsPer); got != want {
		return fmt.Errorf("%d optimizer slots, optimizer %s keeps %d", got, typ, want)
	}
	next := 0
	for _, p := range c.Params {
		for _, slot := range slotsPer {
			t, name := c.OptimizerState.Slots[next], p.Name+"."+slot
			if t.Name != name || !slices.Equal(t.Shape, p.Shape) {
				return fmt.Errorf("optimizer slot %d is %s %v, optimizer %s wants %s %v", next, t.Name, t.Shape, typ, name, p.Shape)
			}
			next++
		}
	}
	return nil
}
