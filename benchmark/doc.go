// Package benchmark holds what cnnctl bench measures and reports: the
// results of a scaling run (Scaling, its Points and their step phases) and
// of a time-to-accuracy run, the statistics over rounds (medians and
// spreads, with gonum's stat), and their output as a terminal table, JSON
// with a fixed schema, CSV and PNG plots (gonum's plot).
//
// It runs nothing itself: cnnctl's bench commands drive the clusters and
// fill these types.
package benchmark
