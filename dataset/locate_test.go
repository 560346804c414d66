package dataset

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The real MNIST is parsed once for every test that needs it.
var mnist struct {
	once        sync.Once
	dir         string
	train, test *Set
	err         error
}

// loadRealMNIST returns MNIST, skipping the test where it cannot be located
// (no --data, no DPCNN_MNIST_DIR, no go command or module proxy); a located
// copy that fails its checks fails the test.
func loadRealMNIST(t testing.TB) (dir string, train, test *Set) {
	t.Helper()
	mnist.once.Do(func() {
		mnist.dir, mnist.err = Locate("")
		if mnist.err == nil {
			mnist.train, mnist.test, mnist.err = loadMNISTFrom(mnist.dir)
		}
	})
	if mnist.dir == "" {
		t.Skipf("MNIST not available: %v", mnist.err)
	}
	if mnist.err != nil {
		t.Fatal(mnist.err)
	}
	return mnist.dir, mnist.train, mnist.test
}

func TestLoadMNIST(t *testing.T) {
	_, train, test := loadRealMNIST(t)
	for _, tc := range []struct {
		name string
		set  *Set
		n    int
	}{{"train", train, 60000}, {"test", test, 10000}} {
		s := tc.set
		if s.N != tc.n || s.Rows != 28 || s.Cols != 28 || len(s.Pixels) != tc.n*784 || len(s.Labels) != tc.n || s.Classes != 10 {
			t.Errorf("%s: %d images of %dx%d, %d pixels, %d labels, %d classes", tc.name, s.N, s.Rows, s.Cols, len(s.Pixels), len(s.Labels), s.Classes)
		}
		var counts [10]int
		for _, l := range s.Labels {
			counts[l]++
		}
		for digit, c := range counts {
			if c < tc.n/20 {
				t.Errorf("%s: only %d samples of digit %d", tc.name, c, digit)
			}
		}
	}
	// Well-known facts of the release: the first training label is 5, the
	// first test label 7.
	if train.Labels[0] != 5 || test.Labels[0] != 7 {
		t.Errorf("first labels %d and %d, want 5 and 7", train.Labels[0], test.Labels[0])
	}
}

// copyMNISTFile copies name from the real MNIST folder into dir, unpacking
// it when raw is set.
func copyMNISTFile(t *testing.T, from, dir, name string, raw bool) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(from, name+".gz"))
	if err != nil {
		t.Fatal(err)
	}
	if raw {
		gz, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if data, err = io.ReadAll(gz); err != nil {
			t.Fatal(err)
		}
		name = strings.TrimSuffix(name, ".gz")
	} else {
		name += ".gz"
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A folder with some files unpacked loads the same sets.
func TestLoadMNISTUnpacked(t *testing.T) {
	from, train, test := loadRealMNIST(t)
	dir := t.TempDir()
	for _, f := range mnistFiles() {
		copyMNISTFile(t, from, dir, f.name, strings.Contains(f.name, "labels") || strings.HasPrefix(f.name, "t10k"))
	}
	train2, test2, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(train2.Pixels, train.Pixels) || !bytes.Equal(train2.Labels, train.Labels) ||
		!bytes.Equal(test2.Pixels, test.Pixels) || !bytes.Equal(test2.Labels, test.Labels) {
		t.Error("unpacked files loaded different sets")
	}
}

func TestLoadMNISTCorrupted(t *testing.T) {
	from, _, _ := loadRealMNIST(t)
	for _, raw := range []bool{false, true} {
		dir := t.TempDir()
		for _, f := range mnistFiles() {
			copyMNISTFile(t, from, dir, f.name, raw)
		}
		name, want := "train-labels-idx1-ubyte.gz", mnistFiles()[1].gzipSum
		if raw {
			name, want = "train-labels-idx1-ubyte", mnistFiles()[1].rawSum
		}
		path := filepath.Join(dir, name)
		data, _ := os.ReadFile(path)
		data[len(data)/2] ^= 0x40
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		actual := sha256.Sum256(data)
		_, _, err := LoadMNIST(dir)
		if err == nil {
			t.Fatalf("corrupted %s loaded", name)
		}
		msg := err.Error()
		for _, part := range []string{path, "want " + want, "sha256 " + hex.EncodeToString(actual[:]), "go mod download " + GoMNISTModule, EnvMNISTDir} {
			if !strings.Contains(msg, part) {
				t.Errorf("error %q lacks %q", msg, part)
			}
		}
	}
}

func TestLoadMNISTMissing(t *testing.T) {
	dir := t.TempDir()
	_, _, err := LoadMNIST(dir)
	if err == nil {
		t.Fatal("empty folder loaded")
	}
	for _, part := range []string{"train-images-idx3-ubyte.gz", dir, "go mod download " + GoMNISTModule, EnvMNISTDir, "--data"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	_, _, err = LoadMNIST(filepath.Join(dir, "absent"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing folder: error %v", err)
	}
}

func TestLocate(t *testing.T) {
	dir, file := t.TempDir(), filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	moduleDir := t.TempDir()
	os.Mkdir(filepath.Join(moduleDir, "data"), 0o755)
	env := func(v string) func(string) string {
		return func(key string) string {
			if key == EnvMNISTDir {
				return v
			}
			return ""
		}
	}
	downloads := 0
	download := func(module string) (string, error) {
		downloads++
		if module != GoMNISTModule {
			t.Errorf("download %q", module)
		}
		return moduleDir, nil
	}
	failed := func(string) (string, error) { return "", errors.New("the go command is needed") }
	for _, tc := range []struct {
		name, flag, env string
		download        func(string) (string, error)
		want, wantErr   string
	}{
		{"flag wins", dir, "/elsewhere", failed, dir, ""},
		{"environment", "", dir, failed, dir, ""},
		{"module", "", "", download, filepath.Join(moduleDir, "data"), ""},
		{"no go command", "", "", failed, "", "dataset: locate MNIST: the go command is needed; or point DPCNN_MNIST_DIR or --data"},
		{"flag missing", filepath.Join(dir, "nope"), "", failed, "", "dataset: MNIST folder from --data: stat " + filepath.Join(dir, "nope")},
		{"environment missing", "", filepath.Join(dir, "nope"), failed, "", "from DPCNN_MNIST_DIR"},
		{"not a folder", file, "", failed, "", file + " is not a folder"},
	} {
		got, err := locate(tc.flag, env(tc.env), tc.download)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v, want %q", tc.name, got, err, tc.want)
		}
	}
	if downloads != 1 {
		t.Errorf("%d downloads, want 1", downloads)
	}
}

// The go command finds the module (from the cache, or through the proxy).
func TestGoModDownloadDir(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	dir, err := goModDownloadDir(GoMNISTModule)
	if err != nil {
		t.Skipf("module not available: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "t10k-labels-idx1-ubyte.gz")); err != nil {
		t.Error(err)
	}
	t.Setenv("GOPROXY", "off") // fail at once, without the network
	if _, err := goModDownloadDir("example.invalid/none@v0.0.0-20000101000000-000000000000"); err == nil {
		t.Error("a module that does not exist was found")
	}
}
