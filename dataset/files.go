package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File describes a file by its name, size and SHA-256: what a copy of it
// is checked against. The data set's files are described this way for the
// workers that fetch them, and the coordinator describes the checkpoints
// and models it sends its standbys the same way. The wire's FileInfo is
// made from it where a message is built.
type File struct {
	Name   string // a plain file name, no folders
	Size   int64  // bytes
	SHA256 string // of the bytes, 64 lowercase hex digits
}

// DescribeFile reads the file at path and describes it under name.
func DescribeFile(path, name string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return File{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// MNISTFiles describes the MNIST files in dir, in MNISTFileNames order:
// of each of the four, the gzip compressed file when dir has it, else the
// unpacked one, as LoadMNIST prefers them. A file dir has in neither form
// is left out (LoadMNIST says which is missing).
func MNISTFiles(dir string) ([]File, error) {
	var out []File
	for _, base := range MNISTFileNames() {
		for _, name := range []string{base + ".gz", base} {
			f, err := DescribeFile(filepath.Join(dir, name), name)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("dataset: %w", err)
			}
			out = append(out, f)
			break
		}
	}
	return out, nil
}
