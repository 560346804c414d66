// Package secure holds what dpcnn's processes need to talk to each other
// safely: TLS configurations for mutual TLS loaded from PEM files, a
// development certificate authority that issues the certificates a cluster
// needs (what `cnnctl certs` writes), bearer tokens and the gRPC
// interceptors that check them, and the rule that plaintext is allowed only
// when asked for and only on a loopback address.
//
// Who proves what to a coordinator:
//
//   - workers present a client certificate signed by the cluster's CA
//     (WorkerService);
//   - cnnctl presents a bearer token when the coordinator has a token file,
//     else a client certificate (JobService, ClusterService, reflection);
//   - gRPC health checking needs nothing, so that probes work.
//
// It uses the standard library's crypto and gRPC's credentials only.
package secure
