package coordinator

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

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
