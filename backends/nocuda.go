//go:build nocuda

package backends

import (
	"errors"
	"log/slog"

	"github.com/dpcnn/dpcnn/kernels"
)

// errNoCUDA is the answer of a binary built without the CUDA backend.
var errNoCUDA = errors.New("backend cuda: this binary was built with -tags nocuda, without the CUDA backend")

func openCUDA(*slog.Logger) (kernels.Backend[float32], error) { return nil, errNoCUDA }

func cudaUnavailable(err error) bool { return errors.Is(err, errNoCUDA) }

func cudaDetail(kernels.Backend[float32]) string { return "" }
