package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// MNISTFiles describes each of the four files once, the gzip one when both
// forms are there, in MNISTFileNames order, with its size and SHA-256; a
// missing one is left out.
func TestMNISTFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) File {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(data))
		return File{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}
	trainImages := write(MNISTTrainImages+".gz", "gzip images")
	write(MNISTTrainImages, "raw images, passed over")
	testImages := write(MNISTTestImages, "raw test images")
	testLabels := write(MNISTTestLabels+".gz", "gzip test labels")
	got, err := MNISTFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []File{trainImages, testImages, testLabels}; !slices.Equal(got, want) {
		t.Errorf("MNISTFiles = %v, want %v", got, want)
	}
	if _, err := DescribeFile(filepath.Join(dir, "none"), "none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DescribeFile of a missing file: %v, want fs.ErrNotExist", err)
	}
}
