package backends

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/dpcnn/dpcnn/kernels"
)

// Names lists the names Open accepts.
var Names = []string{"auto", "cpu", "cuda", "reference"}

// Open returns the named backend; threads is the CPU backend's thread count
// (0: all cores), unused by the others. "auto" logs, through slog.Default,
// which backend it chose and why. Release the backend with Close.
func Open(name string, threads int) (kernels.Backend[float32], error) {
	return OpenWithLogger(name, threads, slog.Default())
}

// OpenWithLogger is Open with the logger that "auto" and the CUDA backend
// report to.
func OpenWithLogger(name string, threads int, log *slog.Logger) (kernels.Backend[float32], error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch name {
	case "cpu":
		return kernels.NewCPU(threads), nil
	case "reference":
		return kernels.NewReference[float32](), nil
	case "cuda":
		return openCUDA(log)
	case "auto":
		b, err := openCUDA(log)
		if err == nil {
			return b, nil
		}
		if cudaUnavailable(err) {
			// The normal case on a machine without a GPU: say why in
			// one line at Info, the full search report at Debug.
			log.Info("backend auto: no usable CUDA device, using the CPU backend", "reason", firstLine(err))
			log.Debug("backend auto: CUDA search", "err", err)
		} else {
			// A GPU machine whose CUDA setup is broken: worth a warning.
			log.Warn("backend auto: the CUDA backend failed, using the CPU backend", "err", err)
		}
		return kernels.NewCPU(threads), nil
	default:
		return nil, fmt.Errorf("unknown backend %q (known: %s)", name, strings.Join(Names, ", "))
	}
}

// Kind is the kind of device b computes on, as the worker registers it:
// "cuda" for the CUDA backend, else "cpu".
func Kind(b kernels.Backend[float32]) string {
	if b.Name() == "cuda" {
		return "cuda"
	}
	return "cpu"
}

// Detail describes b for logs and the worker's join request: its name, and
// for CUDA the device and how its kernels were obtained.
func Detail(b kernels.Backend[float32]) string {
	if d := cudaDetail(b); d != "" {
		return d
	}
	if c, ok := b.(*kernels.CPU); ok {
		return fmt.Sprintf("cpu: %d threads", c.Threads())
	}
	return b.Name()
}

// Close releases what b holds: the CPU backend's threads, the CUDA
// backend's device memory and context. Backends holding nothing are left
// alone.
func Close(b kernels.Backend[float32]) error {
	switch c := b.(type) {
	case interface{ Close() error }:
		return c.Close()
	case interface{ Close() }:
		c.Close()
	}
	return nil
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
