package coordinator

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dpcnn/dpcnn/model"
)

// WriteCheckpointFile stores c at path atomically: it writes a temporary
// file in the same directory, syncs it, renames it over path and syncs the
// directory, so a crash leaves either the old checkpoint or the new one,
// never a torn file.
func WriteCheckpointFile(path string, c *model.Checkpoint) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := model.WriteCheckpoint(bw, c); err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadCheckpointFile loads and verifies the checkpoint at path.
func ReadCheckpointFile(path string) (*model.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := model.ReadCheckpoint(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return c, nil
}

// checkpointFileName names the checkpoint of a step in a job's folder. The
// step is zero-padded so that names sort like steps.
func checkpointFileName(step int64) string { return fmt.Sprintf("checkpoint-%010d.ckpt", step) }

// checkpointStep parses a name made by checkpointFileName.
func checkpointStep(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, "checkpoint-")
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, ".ckpt"); !ok {
		return 0, false
	}
	step, err := strconv.ParseInt(digits, 10, 64)
	return step, err == nil && step >= 0
}

// jobCheckpoints lists the checkpoint files in dir, newest step first; a
// missing dir has none.
func jobCheckpoints(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type file struct {
		step int64
		path string
	}
	var files []file
	for _, e := range entries {
		if step, ok := checkpointStep(e.Name()); ok && e.Type().IsRegular() {
			files = append(files, file{step, filepath.Join(dir, e.Name())})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(b.step, a.step) })
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return paths, nil
}

// pruneCheckpoints removes the checkpoint files in dir of steps below keep.
func pruneCheckpoints(dir string, keep int64) error {
	paths, err := jobCheckpoints(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range paths {
		if step, _ := checkpointStep(filepath.Base(p)); step < keep {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
