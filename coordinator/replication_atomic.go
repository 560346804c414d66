package coordinator

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
)

// atomicFile is a file written under a temporary name in its final folder
// and renamed into place only once it is complete and synced, the way
// WriteCheckpointFile writes: a crash, or a write refused half way, leaves
// the old file or none, never a torn one. The replicas a standby receives
// and the models the leader exports are written so.
type atomicFile struct {
	*os.File
	final     string
	installed bool
}

// createAtomic starts the file that install will put at final.
func createAtomic(final string) (*atomicFile, error) {
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, filepath.Base(final)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: f, final: final}, nil
}

// finish syncs and closes the temporary file, which may then be read back
// (f.Name()) before it is installed.
func (f *atomicFile) finish() error {
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// install renames the finished file into place and syncs the folder.
func (f *atomicFile) install() error {
	if err := os.Rename(f.Name(), f.final); err != nil {
		return err
	}
	f.installed = true
	if d, err := os.Open(filepath.Dir(f.final)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// discard removes the temporary file unless it was installed; it is safe
// to defer.
func (f *atomicFile) discard() {
	if !f.installed {
		f.Close()
		os.Remove(f.Name())
	}
}

// writeFileAtomic writes what write produces to path atomically.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := createAtomic(path)
	if err != nil {
		return err
	}
	defer f.discard()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.finish(); err != nil {
		return err
	}
	return f.install()
}
