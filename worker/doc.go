// Package worker is the worker process's library, in two parts that only
// the Computer joins:
//
//   - the gradient computer (compute.go, fault.go): a Computer owns a
//     network replica on one Backend, fills micro-batches from its copy of
//     the data set (augmented as the job says) and returns gradient sums
//     and test counts, a panic inside it recovered as a ComputeFault. The
//     in-process trainers (train.LocalWorkers, localcluster) use it too;
//   - the daemon (daemon*.go, datacache.go): registration in etcd under a
//     lease, the Work stream to the leading coordinator (session, queue,
//     heartbeats, drain), and the data set's cache, checked by SHA-256.
//
// It imports the numeric packages (model, kernels, backends, dataset, job,
// tree), the wire (proto/dpcnnv1), cluster, metrics and secure; never coordinator or
// train.
package worker
