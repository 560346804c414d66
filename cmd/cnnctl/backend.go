package main

import (
	"fmt"

	"github.com/dpcnn/dpcnn/kernels"
)

// newBackend returns the named compute backend.
func newBackend(name string, threads int) (kernels.Backend[float32], error) {
	switch name {
	case "cpu":
		return kernels.NewCPU(threads), nil
	case "reference":
		return kernels.NewReference[float32](), nil
	default:
		return nil, fmt.Errorf("unknown backend %q (known: cpu, reference)", name)
	}
}
