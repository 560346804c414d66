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
//   - The coordinator is one CPU: it decodes and adds each result it
//     receives (its reduce), runs the optimizer after the last, and encodes
//     each message it sends (its broadcast), one after another.
//
// Two topologies carry the same assignments. In the star every message
// crosses the coordinator's link. In the tree, the workers of a step's
// first assignments form a fixed k-ary tree in the engine's order: the
// coordinator sends the parameters to the first k, each worker forwards
// them to its k children, and each worker sends up one message with its
// own gradient and its subtree's, added as its children's chunks arrive.
// Work the engine gives out again (after a failure) travels the star's
// way. A worker that dies mid step takes its own result with it; its
// children send their sums to its parent instead, and the engine learns
// of the death after the detection delay and gives its work to another.
//
// The results are the same JSON points as `cnnctl bench scaling`
// (benchmark.Point), so simulated and measured figures plot side by side.
package simulate
