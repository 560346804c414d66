// Package coordinator is the adapters around the training core
// (package train): the gRPC server of the job, worker, cluster and
// replication services, one driver goroutine per job that feeds its Engine
// events and carries out its effects, the leadership won in etcd, the
// replication of checkpoints to the standbys, and the checkpoint files.
//
// It may import train, tree, job, model, dataset, kernels, cluster, proto
// and secure of this module, and worker for one thing only: the list of
// the data set's files it serves (worker.LocalDatasetFiles). Workers are
// reached over gRPC.
package coordinator
