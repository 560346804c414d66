// Package localcluster runs a whole cluster in one process — an embedded
// etcd, one coordinator and workers talking gRPC over 127.0.0.1 with mutual
// TLS, the same code as the daemons — for `cnnctl train`, `cnnctl bench
// cluster` and tests.
//
// It may import every package of this module except cmd/ and e2e; nothing
// of this module but the mains and tests imports it.
package localcluster
