package dpcnnv1

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// DescribeFile returns the FileInfo of the file at path under name: its
// size and the SHA-256 of its bytes (lowercase hex), which a receiver of
// the file checks. The coordinator describes the data set files, the
// checkpoints and the models it sends this way, and the worker the files
// it holds.
func DescribeFile(path, name string) (*FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &FileInfo{Name: name, Size: n, Sha256: hex.EncodeToString(h.Sum(nil))}, nil
}
