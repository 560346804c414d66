// Package coordinator is the adapters around the training core
// (package train): the gRPC server of the job, worker, cluster and
// replication services, one driver goroutine per job that feeds its Engine
// events and carries out its effects, the leadership won in etcd, the
// replication of checkpoints to the standbys, and the checkpoint files.
//
// Its files, one job each:
//
//   - server.go: configuration, the gRPC server, its gates (leader-only
//     methods, credentials) and health; server_leadership.go: the
//     campaign, a term's lease fence and assignment IDs;
//   - jobs.go: JobService's calls; jobs_entry.go: the leader's record of a
//     job; jobs_schedule.go: one job at a time, oldest first;
//   - jobs_driver.go: a job's driver, events in and effects out;
//     jobs_driver_checkpoint.go: its checkpoints and model on disk;
//     jobs_driver_status.go: its state, status in etcd and events;
//     jobs_driver_metrics.go: its series, the step's phases timed;
//   - server_workers.go: WorkerService (join, the Work stream,
//     heartbeats); server_dataset.go: the data set's files;
//     server_cluster.go: ClusterService; server_files.go: files sent
//     in chunks (checkpoints, models, the data set);
//     server_mailbox.go: the unbounded queue between streams and drivers;
//   - replication*.go: the standbys' copies of checkpoints (send, receive,
//     atomic files); checkpointfile.go: checkpoint file names and reads.
//
// It may import train, tree, job, model, dataset, kernels, cluster,
// metrics, proto and secure of this module, and not worker: workers are reached over gRPC
// only, and the data set's files it serves are described by package
// dataset (TestLayering).
package coordinator
