// Package cluster holds the etcd side of a dpcnn cluster: the keyspace the
// coordinators and workers share, helpers that read and write it, and an
// embedded etcd server for tests and the single-process local mode.
//
// The keyspace, under a configurable prefix (DefaultPrefix, "/dpcnn/"):
//
//	<prefix>workers/<id>       WorkerRecord JSON, bound to the worker's lease
//	<prefix>coordinators/<id>  the coordinator's gRPC address, bound to its session lease
//	<prefix>leader/<lease>     the coordinator election (concurrency.Election
//	                           on <prefix>leader); the oldest key leads and its
//	                           value is the leader's gRPC address
//	<prefix>jobs/<id>          the job spec as canonical JSON (job.Spec.JSON)
//	<prefix>jobs/<id>/status   JobStatus JSON
//
// Every function takes the client and the prefix explicitly: the package
// keeps no state of its own.
package cluster
