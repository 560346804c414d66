package main

import (
	"fmt"

	"github.com/dpcnn/dpcnn/backends"
	"github.com/dpcnn/dpcnn/coordinator"
	"github.com/dpcnn/dpcnn/job"
	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/model"
)

// checkpointNet is a checkpoint's network with its parameters, on a
// backend of its own: what eval, predict and viz run images through.
type checkpointNet struct {
	ckpt *model.Checkpoint
	net  *model.Network[float32]
	b    kernels.Backend[float32]
}

// openCheckpointNet reads the checkpoint at path, checks that its network
// fits data (use says what for, in the error: "evaluated on MNIST") and
// builds it on backend for batches of up to maxBatch, with the
// checkpoint's parameters. Close releases it.
func openCheckpointNet(path string, data job.Data, use, backend string, threads, maxBatch int) (*checkpointNet, error) {
	c, err := coordinator.ReadCheckpointFile(path)
	if err != nil {
		return nil, err
	}
	if err := job.CheckModelData(c.Spec, data); err != nil {
		return nil, fmt.Errorf("%s cannot be %s: %w", path, use, err)
	}
	b, err := newBackend(backend, threads)
	if err != nil {
		return nil, err
	}
	net, err := model.New[float32](c.Spec, b, maxBatch)
	if err != nil {
		backends.Close(b)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := net.ImportParams(c.ModelParams()); err != nil {
		net.Close()
		backends.Close(b)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &checkpointNet{ckpt: c, net: net, b: b}, nil
}

func (c *checkpointNet) Close() {
	c.net.Close()
	backends.Close(c.b)
}
