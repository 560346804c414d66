package coordinator

import (
	"crypto/tls"
	"path/filepath"
	"time"
)

// Replication: every coordinator keeps the jobs' files in its own data
// folder, and the leader pushes each checkpoint and each final model to the
// standby coordinators over ReplicationService, so that a standby that
// takes over resumes from the latest checkpoint without a shared volume.
//
//   - Who: the standbys are the coordinators announced in etcd
//     (keyspace.CoordinatorKey, under each one's session lease), less the
//     leader. The leader watches that registry for its whole term.
//   - What is waited for: persist writes a checkpoint to the leader's disk,
//     pushes it to every standby that is in sync and waits until each has
//     stored it durably (SHA-256 and CRC checked, temp file, fsync, rename)
//     or ReplicationConfig.Timeout has passed; only then is it recorded in
//     etcd as the job's latest. Training waits meanwhile, so a failover
//     redoes at most one checkpoint interval of steps.
//   - What is not: a standby that failed or timed out, or has just joined,
//     is behind: checkpoints do not wait for it while a background loop
//     brings it up to date (every job's newest checkpoint and its model,
//     with backoff); once it is, they wait for it again. With no standby,
//     nothing is waited for, and the job log says that the checkpoints are
//     on the leader's disk alone.
//   - Where: DataDir/jobs/<id>/checkpoint-<step>.ckpt and model.onnx, the
//     leader's names, so a new leader's loadCheckpoint finds them as its
//     own; a receiver keeps a job's two newest checkpoints, as the leader
//     does.
//
// The receiving side is replication_receive.go, the sending side
// replication_send.go.

// ReplicationConfig says how checkpoints and models reach the standby
// coordinators.
type ReplicationConfig struct {
	// Disabled keeps every file on the leader's disk alone: for
	// coordinators that share one data folder (a ReadWriteMany volume).
	// Even then replication does no harm: a standby that finds the same
	// bytes under the name already writes nothing.
	Disabled bool
	// Timeout bounds the leader's wait for each standby's acknowledgement
	// of a checkpoint, and each push of the background catch-up (default
	// 10 s).
	Timeout time.Duration
	// ClientTLS is how this coordinator dials the others: the CA their
	// certificates chain to, its own certificate (serverAuth and
	// clientAuth, like every coordinator's) as the client certificate, and
	// ServerName when they are dialed by IP. Its certificate is also what
	// a receiver recognises other coordinators by: a caller's certificate
	// must have the same subject. Nil with plaintext servers (Credentials
	// nil), which dial plaintext, to loopback addresses only.
	ClientTLS *tls.Config
}

func (c ReplicationConfig) withDefaults() ReplicationConfig {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	return c
}

// maxReplicaFileSize bounds a pushed file: above the largest checkpoint
// the format allows (2^28 float32 values and a 16 MiB header) and the
// ONNX export of such a network.
const maxReplicaFileSize = 1<<30 + 32<<20

// Backoff of the background catch-up of a standby that is behind
// (cluster.Backoff).
const (
	replicaRetryMin = 500 * time.Millisecond
	replicaRetryMax = 30 * time.Second
)

// ownCheckpointPaths points every job's recorded checkpoint at this
// coordinator's own copy. The path in a job's etcd record is where the
// leader that wrote it keeps it; every coordinator keeps its copy under the
// same job folder and file name in its own data folder (the same path
// where the folder is shared).
func (s *Server) ownCheckpointPaths(jobs map[string]*jobEntry) {
	for _, e := range jobs {
		name := filepath.Base(e.status.Checkpoint)
		if _, ok := checkpointStep(name); ok {
			e.status.Checkpoint = filepath.Join(s.jobDir(e.id), name)
		}
	}
}
