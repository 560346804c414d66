// Package e2e holds the end-to-end tests of the distributed trainer: a real
// embedded etcd, a coordinator and several workers talking gRPC over
// 127.0.0.1, first as goroutines of the test, then as separate processes
// built from cmd/. They check what no package test can: that a job trained
// by three workers over sockets succeeds, learns, and ends with parameters
// bit-for-bit equal to a single in-process worker's.
//
// The package has no code of its own besides this comment.
package e2e
