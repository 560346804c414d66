package cuda

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
)

// LibraryPathEnv names directories (separated by colons) searched before any
// other place for libcuda, libnvrtc and libcublas: the way to point a worker
// at a particular installation.
const LibraryPathEnv = "DPCNN_CUDA_LIBRARY_PATH"

// Library is a shared library loaded into the process. Libraries are never
// unloaded: the CUDA libraries keep threads and state that do not survive a
// dlclose.
type Library struct {
	// Kind says what the library is for ("CUDA driver", "NVRTC", "cuBLAS").
	Kind string
	// Path is the file that was loaded: the path tried, or, for a bare name
	// resolved by the dynamic loader, the file the loader chose (read back
	// from /proc/self/maps).
	Path   string
	handle uintptr
}

// Attempt is one place a library was looked for, and what happened there.
type Attempt struct {
	Path   string // a file path, or a bare name handed to the dynamic loader
	Result string // "not present", "skipped: …", or the loader's error
}

// LoadError reports a library that could not be loaded from any of the
// places searched, naming each one and why it failed.
type LoadError struct {
	Kind  string   // "CUDA driver", "NVRTC", "cuBLAS"
	Names []string // the file names looked for, in order of preference
	Tried []Attempt
}

func (e *LoadError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cuda: %s library not found (looked for %s in %d places):", e.Kind, strings.Join(e.Names, ", "), len(e.Tried))
	for _, a := range e.Tried {
		fmt.Fprintf(&b, "\n  %s: %s", a.Path, a.Result)
	}
	if len(e.Tried) == 0 {
		b.WriteString(" nothing (no directory to search)")
	}
	return b.String()
}

// libSpec says what to look for.
type libSpec struct {
	kind  string
	names []string // file names in order of preference
	// beforeOpen, when set, runs before a path is opened (to preload
	// what the library needs from its directory).
	beforeOpen func(path string)
}

// search is where libraries are looked for, in order: the override
// directories, the directories of LD_LIBRARY_PATH, the bare names through
// the dynamic loader (its cache and system directories) when loader is set,
// then the standard directories. Tests build their own to search only
// temporary directories.
type search struct {
	override []string
	ldPath   []string
	loader   bool
	standard []string
}

// systemSearch is the search of a real process, from its environment.
func systemSearch() search {
	return search{
		override: splitPath(os.Getenv(LibraryPathEnv)),
		ldPath:   splitPath(os.Getenv("LD_LIBRARY_PATH")),
		loader:   true,
		standard: standardDirs(),
	}
}

func splitPath(s string) []string {
	var dirs []string
	for d := range strings.SplitSeq(s, ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// standardDirs lists the places CUDA libraries are installed: driver
// directories of distributions and containers, the toolkit's, and the
// nvidia-* wheels of a Python environment (PyTorch's).
func standardDirs() []string {
	dirs := []string{
		"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
		"/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
		"/usr/lib/wsl/lib", "/run/opengl-driver/lib",
	}
	for _, env := range []string{"CUDA_PATH", "CUDA_HOME"} {
		if root := os.Getenv(env); root != "" {
			dirs = append(dirs, filepath.Join(root, "lib64"), filepath.Join(root, "targets/x86_64-linux/lib"))
		}
	}
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if root := os.Getenv(env); root != "" {
			dirs = append(dirs, wheelDirs(root)...)
		}
	}
	dirs = append(dirs, wheelDirs("/opt/torch/.venv")...)
	dirs = append(dirs, "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
	versioned, _ := filepath.Glob("/usr/local/cuda-*/lib64")
	slices.Sort(versioned)
	slices.Reverse(versioned) // newest toolkit first
	return append(dirs, versioned...)
}

// wheelDirs are the library directories of NVIDIA's pip wheels under a
// Python prefix: CUDA 13 wheels put everything in nvidia/cu13/lib, CUDA 12
// wheels use one directory per package.
func wheelDirs(prefix string) []string {
	var dirs []string
	for _, sub := range []string{"cu13/lib", "cuda_nvrtc/lib", "cublas/lib", "cuda_runtime/lib"} {
		found, _ := filepath.Glob(filepath.Join(prefix, "lib/python3*/site-packages/nvidia", sub))
		dirs = append(dirs, found...)
	}
	return dirs
}

// isStubDir reports a toolkit stubs directory: its libcuda.so.1 only
// returns CUDA_ERROR_STUB_LIBRARY, so it is never loaded.
func isStubDir(dir string) bool {
	return slices.Contains(strings.Split(filepath.Clean(dir), string(filepath.Separator)), "stubs")
}

// find loads the first of spec's names that loads, trying every place of
// the search in order, and reports every attempt when none does.
func (s search) find(spec libSpec) (*Library, error) {
	e := &LoadError{Kind: spec.kind, Names: spec.names}
	seen := map[string]bool{}
	tryDirs := func(dirs []string) *Library {
		for _, dir := range dirs {
			if isStubDir(dir) {
				e.Tried = append(e.Tried, Attempt{dir, "skipped: a toolkit stubs directory (its libraries only return CUDA_ERROR_STUB_LIBRARY)"})
				continue
			}
			for _, name := range spec.names {
				path := filepath.Join(dir, name)
				if seen[path] {
					continue
				}
				seen[path] = true
				if _, err := os.Stat(path); err != nil {
					e.Tried = append(e.Tried, Attempt{path, "not present"})
					continue
				}
				if spec.beforeOpen != nil {
					spec.beforeOpen(path)
				}
				h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
				if err != nil {
					e.Tried = append(e.Tried, Attempt{path, err.Error()})
					continue
				}
				return &Library{Kind: spec.kind, Path: path, handle: h}
			}
		}
		return nil
	}
	if lib := tryDirs(s.override); lib != nil {
		return lib, nil
	}
	if lib := tryDirs(s.ldPath); lib != nil {
		return lib, nil
	}
	if s.loader {
		for _, name := range spec.names {
			h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err != nil {
				e.Tried = append(e.Tried, Attempt{name + " (dynamic loader: ld.so.cache and system directories)", err.Error()})
				continue
			}
			path := mappedPath(name)
			if path == "" {
				path = name
			}
			if isStubDir(filepath.Dir(path)) {
				e.Tried = append(e.Tried, Attempt{path, "skipped: the dynamic loader found a toolkit stub"})
				continue
			}
			return &Library{Kind: spec.kind, Path: path, handle: h}, nil
		}
	}
	if lib := tryDirs(s.standard); lib != nil {
		return lib, nil
	}
	return nil, e
}

// mappedPath returns the file of a loaded library whose name starts with the
// stem of name (libcuda.so.1 → libcuda.so), as /proc/self/maps shows it, or
// "" when it is not mapped.
func mappedPath(name string) string {
	stem := name
	if i := strings.Index(name, ".so"); i >= 0 {
		stem = name[:i+3]
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexByte(line, '/')
		if i < 0 {
			continue
		}
		path := line[i:]
		if strings.HasPrefix(filepath.Base(path), stem) {
			return path
		}
	}
	return ""
}

// preload loads a helper library from dir by path, best effort: NVRTC
// loads its builtins, cuBLAS its Lt half and the driver its PTX JIT by bare
// name at run time, which fails when their directory is not on the
// loader's path; an object already loaded with the same SONAME is reused
// instead. It returns the path loaded, or "" when none was.
func preload(dir string, patterns ...string) string {
	for _, pat := range patterns {
		found, _ := filepath.Glob(filepath.Join(dir, pat))
		slices.Sort(found)
		slices.Reverse(found)
		for _, path := range found {
			if _, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL); err == nil {
				return path
			}
		}
	}
	return ""
}

// symbol is one C function to bind: its exported name and a pointer to the
// Go function variable that calls it.
type symbol struct {
	name     string
	fn       any
	optional bool // bound when present; its absence is not an error
}

// bind binds every symbol of lib, collecting the names of the missing ones
// into one error (purego.RegisterLibFunc would panic on the first).
func bind(lib *Library, syms []symbol) error {
	var missing []string
	for _, s := range syms {
		addr, err := purego.Dlsym(lib.handle, s.name)
		if err != nil || addr == 0 {
			if !s.optional {
				missing = append(missing, s.name)
			}
			continue
		}
		purego.RegisterFunc(s.fn, addr)
	}
	if len(missing) > 0 {
		return fmt.Errorf("cuda: %s %s: missing symbols %s (not a usable %s library)", lib.Kind, lib.Path, strings.Join(missing, ", "), lib.Kind)
	}
	return nil
}

// Libraries are loaded once per process; later calls get the same result.
var (
	driverOnce sync.Once
	driverLib  *driverAPI
	driverErr  error
)

// loadDriver loads and binds libcuda.so.1 once per process.
func loadDriver() (*driverAPI, error) {
	driverOnce.Do(func() {
		driverLib, driverErr = openDriver(systemSearch())
	})
	return driverLib, driverErr
}

var (
	nvrtcMu   sync.Mutex
	nvrtcLibs = map[int]*nvrtcResult{}
)

type nvrtcResult struct {
	api *NVRTC
	err error
}

// LoadNVRTC loads and binds NVRTC once per process, preferring the newest
// major version not newer than maxMajor (0: any), and preloads its builtins
// library from the same directory.
func LoadNVRTC(maxMajor int) (*NVRTC, error) {
	nvrtcMu.Lock()
	defer nvrtcMu.Unlock()
	if r, ok := nvrtcLibs[maxMajor]; ok {
		return r.api, r.err
	}
	api, err := openNVRTC(systemSearch(), maxMajor)
	nvrtcLibs[maxMajor] = &nvrtcResult{api, err}
	return api, err
}

var (
	cublasMu   sync.Mutex
	cublasLibs = map[int]*cublasResult{}
)

type cublasResult struct {
	api *cublasAPI
	err error
}

func loadCUBLAS(maxMajor int) (*cublasAPI, error) {
	cublasMu.Lock()
	defer cublasMu.Unlock()
	if r, ok := cublasLibs[maxMajor]; ok {
		return r.api, r.err
	}
	api, err := openCUBLAS(systemSearch(), maxMajor)
	cublasLibs[maxMajor] = &cublasResult{api, err}
	return api, err
}

// versionedNames lists stem.so.<major> for the known majors not above
// maxMajor (0: all), newest first, then the unversioned development name.
func versionedNames(stem string, majors []string, maxMajor int) []string {
	var names []string
	for _, m := range majors {
		var major int
		fmt.Sscanf(m, "%d", &major)
		if maxMajor == 0 || major <= maxMajor {
			names = append(names, stem+".so."+m)
		}
	}
	return append(names, stem+".so")
}

// SetupError is a machine with a CUDA device whose CUDA installation is
// incomplete (NVRTC or cuBLAS missing): not "no GPU here" but a setup to
// fix, so IsUnavailable is false for it.
type SetupError struct {
	Device string // the device found
	Err    error
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("cuda: device %s is present, but %s", e.Device, strings.TrimPrefix(e.Err.Error(), "cuda: "))
}

func (e *SetupError) Unwrap() error { return e.Err }

// IsUnavailable reports an error that means this machine cannot run the
// CUDA backend at all (no driver, no device, a stub or too old a driver),
// as opposed to a failure of a machine that should work.
func IsUnavailable(err error) bool {
	var se *SetupError
	if errors.As(err, &se) {
		return false
	}
	var le *LoadError
	if errors.As(err, &le) {
		return true
	}
	var ce *Error
	if errors.As(err, &ce) && ce.Lib == libDriver {
		switch ce.Code {
		case errNoDevice, errStubLibrary, errInsufficientDriver, errNotInitialized:
			return true
		}
	}
	return errors.Is(err, ErrNoDevice)
}

// ErrNoDevice is returned when the driver loads but reports no device.
var ErrNoDevice = errors.New("cuda: the driver reports no CUDA device")
