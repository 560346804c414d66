package dpcnnv1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// protocVersionLine matches the header line that records the protoc
// version; it is the only part of the output that depends on which protoc
// ran, so a newer protoc than the committer's does not fail the test.
var protocVersionLine = regexp.MustCompile(`(?m)^// (\t|- )protoc +v?[0-9.]+.*$`)

// TestGeneratedCodeIsCurrent regenerates the Go code from the .proto files
// into a temporary folder and compares it with the committed files, so an
// edited .proto cannot be committed without its code.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: builds the protoc plugins")
	}
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc is not installed (Debian: apt-get install protobuf-compiler); cannot check the generated code")
	}
	for _, tool := range []string{"bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH; cannot run scripts/genproto.sh", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "../../scripts/genproto.sh", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/genproto.sh %s: %v\n%s", out, err, msg)
	}

	committed := pbFiles(t, ".")
	fresh := pbFiles(t, filepath.Join(out, "proto", "dpcnnv1"))
	if !slices.Equal(committed, fresh) {
		t.Fatalf("generated files are %v, committed ones %v: run scripts/genproto.sh", fresh, committed)
	}
	for _, name := range fresh {
		want := readNormalised(t, filepath.Join(out, "proto", "dpcnnv1", name))
		got := readNormalised(t, name)
		if !bytes.Equal(got, want) {
			t.Errorf("proto/dpcnnv1/%s is stale: run scripts/genproto.sh", name)
		}
	}
}

// pbFiles lists the generated files (*.pb.go) of a folder, sorted.
func pbFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	slices.Sort(names)
	return names
}

func readNormalised(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return protocVersionLine.ReplaceAll(b, []byte("// protoc (version elided)"))
}
