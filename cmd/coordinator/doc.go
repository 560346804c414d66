// Command coordinator runs a dpcnn coordinator: it campaigns for
// leadership in etcd and, while it leads, queues and runs training jobs on
// the workers that join it. Standbys answer clients with the leader's
// address and take over when it dies.
//
// Every flag has an environment variable, for containers:
//
//	coordinator --etcd https://etcd:2379 --data-dir /var/lib/dpcnn --advertise coordinator-0.coordinator:7070 \
//	    --tls-ca ca.crt --tls-cert coordinator.crt --tls-key coordinator.key --token-file token
//
// It serves mutual TLS (workers present client certificates, cnnctl a
// bearer token from --token-file) and dials etcd over TLS; plaintext needs
// --insecure and is allowed on loopback addresses only. While it leads it
// pushes every checkpoint and model to the standbys' own --data-dir
// (--replicate), so that no shared volume is needed for a failover.
//
// A main: flags and environment (cmd/internal/envflag), signals, and
// coordinator.NewServer; it may import every package of this module.
package main
