// Package simulate runs the real training engine (train.Engine) against a
// discrete-event model of the cluster around it, to show what the protocol
// would do at worker counts no test machine holds: 1 to 4,096 workers on
// links of a given bandwidth, latency and jitter, with compute times taken
// from measured figures, stragglers and failures.
//
// The engine decides everything it decides in a real cluster (which worker
// computes which micro-batches, what is given out again after a failure,
// when a step is applied), and it applies real optimizer steps to real
// parameters, so a simulated job ends with the parameter hash a real one
// would. Only time is modelled:
//
//   - Links. Each worker and the coordinator have a link to one switch, of
//     the same bandwidth in each direction; a message holds the sender's
//     egress and the receiver's ingress, one message at a time in the order
//     asked (FIFO), and arrives one latency (plus up to the jitter, drawn
//     from a counter-based stream) after its last byte left. Messages move
//     in chunks: a node that forwards a message starts once its first chunk
//     is in, so a message relayed down a tree is pipelined.
//   - Compute. A worker computes an assignment's micro-batches one after
//     another for the measured time each (plus up to the jitter; times the
//     slowdown when the step makes it a straggler), after decoding the
//     parameters, and encodes its result after.
//   - The coordinator is one CPU: it adds each result it receives (its
//     reduce; gRPC decodes beside it), runs the optimizer after the last,
//     and sends each message (its broadcast), one after another.
//
// Two topologies carry the same assignments. In the star every message
// crosses the coordinator's link. In the tree, reducers on the workers'
// hosts add FanOut consecutive sums at a time in the engine's order (the
// only order that keeps the bits) and relay the parameters down; see
// tree.go. Work the engine gives out again (after a death) travels the
// star's way, and the engine learns of a death after the detection delay.
//
// The results are the same JSON points as `cnnctl bench scaling`
// (benchmark.Point), so simulated and measured figures plot side by side.
//
// It imports train, tree, job, kernels (the engine's backend), philox and
// benchmark.
package simulate
