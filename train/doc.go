// Package train is the training core: the Engine, a deterministic state
// machine (events in, effects out) that plans each step's global batch,
// schedules its micro-batches on workers as aligned subtrees of the
// reduction tree, combines their sums in the tree's fixed order and applies
// one optimizer step; and the Trainer, which drives an Engine in process
// with LocalWorkers. The coordinator drives the same Engine over gRPC.
//
// It may import only model, dataset, job, kernels and tree of this module,
// and no clock, sockets or goroutines: no gRPC, etcd, protobuf, net, os,
// os/exec or time.Now. TestImports holds it to that.
package train
