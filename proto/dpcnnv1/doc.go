// Package dpcnnv1 is the gRPC wire contract of the distributed trainer: the
// messages and service stubs generated from proto/dpcnn/v1/*.proto (files
// ending in .pb.go; regenerate them with scripts/genproto.sh, never edit
// them), and a few hand-written helpers for what the generated code leaves
// to its users.
//
// Four services make up the contract. JobService is the public API that
// cnnctl calls: submit, follow, cancel and download jobs. WorkerService is
// the one workers call: they join, fetch the data set, and hold one
// bidirectional Work stream over which the coordinator hands out subtrees
// of each step's reduction tree and receives their gradient sums.
// ClusterService lists the workers and says which coordinator leads.
// ReplicationService is the coordinators' own: the leader pushes every
// checkpoint and model to the standbys, which store them in their own data
// folders, so that no shared volume is needed for a failover.
//
// Tensors travel as raw little-endian float32 bytes (Tensor.Data): convert
// them with AppendFloat32s and DecodeFloat32s, or the Tensor methods
// SetFloat32s and DecodeInto, which check the shape as well.
package dpcnnv1

//go:generate ../../scripts/genproto.sh
