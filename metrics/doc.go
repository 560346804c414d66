// Package metrics defines the Prometheus series of the coordinator and the
// workers, and serves them on /metrics. That is its one job: the
// coordinator and the worker say what happened (a step applied, a phase's
// duration, a micro-batch computed) and this package turns it into
// series, so that their names, labels and buckets live in one place.
//
// It imports only the Prometheus client and the standard library, no
// package of ours: job states and worker names arrive as strings. Every
// method is safe on a nil *Metrics and does nothing, so that a process
// without --metrics-listen pays nothing and its code needs no checks.
package metrics
