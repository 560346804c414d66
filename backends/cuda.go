//go:build !nocuda

package backends

import (
	"fmt"
	"log/slog"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/kernels/cuda"
)

func openCUDA(log *slog.Logger) (kernels.Backend[float32], error) {
	o, err := cuda.OptionsFromEnv()
	if err != nil {
		return nil, fmt.Errorf("backend cuda: %w", err)
	}
	o.Logger = log
	b, err := cuda.New(o)
	if err != nil {
		return nil, fmt.Errorf("backend cuda: %w", err)
	}
	return b, nil
}

func cudaUnavailable(err error) bool { return cuda.IsUnavailable(err) }

func cudaDetail(b kernels.Backend[float32]) string {
	cb, ok := b.(*cuda.Backend)
	if !ok {
		return ""
	}
	i := cb.Info()
	return fmt.Sprintf("cuda: %s (sm_%d%d, %.0f GiB), driver CUDA %d.%d, kernels %s from %s",
		i.Name, i.ComputeMajor, i.ComputeMinor, float64(i.TotalMemory)/(1<<30),
		i.DriverVersion/1000, i.DriverVersion%1000/10, i.KernelArch, i.KernelFrom)
}
