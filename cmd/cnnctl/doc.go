// Command cnnctl trains, evaluates, exports and benchmarks convolutional
// networks on MNIST; run `cnnctl help` for its commands.
//
// A main: it may import every package of this module; its commands parse
// flags and call them, and it has no logic of its own to test apart from
// run(ctx, args, stdout, stderr).
package main
