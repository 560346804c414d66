package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --cpuprofile writes a CPU profile of the command (pprof's format: a
// gzipped protocol buffer), and a file it cannot create is an error that
// names the flag.
func TestCPUProfileFlag(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.prof")
	if out, err := runCLI(t, "--cpuprofile", prof, "train", "--net", "simple", "--steps", "2", "--batch", "20",
		"--train-limit", "100", "--test-limit", "10", "--out", filepath.Join(dir, "run")); err != nil {
		t.Fatalf("train with --cpuprofile: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(prof)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the profile is not gzipped, as pprof writes it: %v", err)
	}
	if body, err := io.ReadAll(zr); err != nil || len(body) == 0 {
		t.Fatalf("the profile's body: %d bytes, %v", len(body), err)
	}
	_, err = runCLI(t, "--cpuprofile", filepath.Join(dir, "no", "such", "folder", "cpu.prof"), "train", "--steps", "1")
	if err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Errorf("an uncreatable profile file: %v, want an error naming --cpuprofile", err)
	}
}
