package coordinator

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// loadCheckpoint reads the job's newest readable checkpoint, or returns nil
// when it has none (the job starts over).
//
// The files in the job's folder come first, newest step first: persist
// writes a file (and pushes it to the standbys) before it records it in
// etcd, so a leader that died between the two left a newer checkpoint on
// this disk than etcd knows of. A
// file that cannot be read (truncated, corrupt, of another job) is reported
// and the next older one is tried, so one bad file loses at most one
// checkpoint interval. Files are named by step and a step's checkpoint is
// the same bytes whoever wrote it, so a deposed leader that still writes one
// cannot spoil the newer checkpoints of its successor.
func (d *driver) loadCheckpoint() *model.Checkpoint {
	d.s.mu.Lock()
	recorded, state := d.entry.status.Checkpoint, d.entry.status.State
	d.s.mu.Unlock()
	paths, err := jobCheckpoints(d.s.jobDir(d.id))
	if err != nil {
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("list checkpoints: %v", err))
	}
	if recorded != "" && !slices.Contains(paths, recorded) {
		paths = append(paths, recorded)
	}
	for i, path := range paths {
		c, err := ReadCheckpointFile(path)
		if err == nil && c.Seed != d.spec.Seed {
			err = fmt.Errorf("checkpoint %s is of seed %d, the job's seed is %d", path, c.Seed, d.spec.Seed)
		}
		if err != nil {
			next := "starting over"
			if i+1 < len(paths) {
				next = "trying an older one"
			}
			d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("cannot resume from a checkpoint, %s: %v", next, err))
			continue
		}
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_INFO, fmt.Sprintf("resuming the %s job from its checkpoint at step %d", state.Word(), c.Step))
		return c
	}
	return nil
}

// persist writes a checkpoint durably, pushes it to the standbys, then
// records it in etcd: a recorded checkpoint is always on disk, and on every
// standby in sync.
func (d *driver) persist(c *model.Checkpoint) error {
	dir := d.s.jobDir(d.id)
	path := filepath.Join(dir, checkpointFileName(c.Step))
	if err := WriteCheckpointFile(path, c); err != nil {
		return err
	}
	file, err := describeFile(path, filepath.Base(path))
	if err != nil {
		return err
	}
	size, sum := file.Size, file.Sha256
	// Replication: the standbys store the checkpoint before it is recorded
	// as the job's latest, so a new leader has it on its own disk.
	d.replicate(path, file, fmt.Sprintf("the checkpoint at step %d", c.Step))
	params := c.ParamsSHA256()
	d.lastCkpt = c
	now := d.now().UTC()
	info := &dpcnnv1.CheckpointInfo{Step: c.Step, Epoch: c.Epoch, Size: size, Sha256: sum, WrittenUnixNanos: now.UnixNano(), ParamsSha256: params}
	d.s.mu.Lock()
	st := &d.entry.status
	prev := st.CheckpointStep
	if st.Checkpoint == "" || prev >= c.Step {
		prev = c.Step
	}
	st.Checkpoint, st.CheckpointStep, st.CheckpointEpoch = path, c.Step, c.Epoch
	st.CheckpointSize, st.CheckpointSHA256, st.CheckpointWritten, st.Updated = size, sum, now, now
	st.CheckpointParamsSHA256 = params
	st.AddCheckpoint(keyspace.CheckpointRecord{Step: c.Step, Epoch: c.Epoch, Size: size, SHA256: sum, ParamsSHA256: params, Written: now})
	d.s.mu.Unlock()
	d.dirty = true
	d.writeStatus(true)
	// Keep this checkpoint and the one before it, so that a corrupt newest
	// file still leaves one to resume from.
	if err := pruneCheckpoints(dir, prev); err != nil {
		d.log.Warn("remove old checkpoints", "err", err)
	}
	d.publish(&dpcnnv1.JobEvent{Kind: &dpcnnv1.JobEvent_Checkpoint{Checkpoint: info}}, true)
	d.log.Info("checkpoint", "step", c.Step, "path", path)
	return nil
}

// writeModel exports the final model next to the checkpoint, atomically,
// and pushes it to the standbys; a failure is reported but does not fail
// the trained job (DownloadModel exports again).
func (d *driver) writeModel() {
	if d.lastCkpt == nil {
		return
	}
	path := filepath.Join(d.s.jobDir(d.id), modelFileName)
	err := writeFileAtomic(path, func(w io.Writer) error {
		return model.ExportONNX(w, d.lastCkpt.Spec, d.lastCkpt.ModelParams(), model.ONNXOptions{ProducerVersion: d.s.cfg.Version})
	})
	if err != nil {
		d.logLine(dpcnnv1.LogLevel_LOG_LEVEL_WARN, fmt.Sprintf("write the final model: %v", err))
		return
	}
	if file, err := describeFile(path, modelFileName); err == nil {
		d.replicate(path, file, "the final model")
	}
}

// fileExists reports whether path names an existing regular file.
func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
