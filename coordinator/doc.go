// Package coordinator is the adapters around the training core
// (package train): the gRPC server of the job, worker, cluster and
// replication services, one driver goroutine per job that feeds its Engine
// events and carries out its effects, the leadership won in etcd, the
// replication of checkpoints to the standbys, and the checkpoint files.
//
// It may import train, tree, job, model, dataset, kernels, cluster, proto
// and secure of this module, and not worker: workers are reached over gRPC
// only, and the data set's files it serves are described by package
// dataset (TestImports).
package coordinator
