// Command worker is a dpcnn worker: it joins the leading coordinator (named
// by --coordinator, or found in etcd), fetches the data set from it unless
// given one, and computes gradients until it is stopped. SIGINT or SIGTERM
// drains it: it finishes the subtree under way, sends it, deregisters and
// exits; a second signal kills it.
//
// A main: flags and environment (cmd/internal/envflag), signals, and
// worker.Run; it may import every package of this module.
package main
