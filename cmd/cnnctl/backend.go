package main

import (
	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/kernels"
)

// newBackend returns the named compute backend (cpu, cuda, auto or
// reference; see package backends).
func newBackend(name string, threads int) (kernels.Backend[float32], error) {
	return backends.Open(name, threads)
}
