// Command worker is a dpcnn worker: it joins the leading coordinator (named
// by --coordinator, or found in etcd), fetches the data set from it unless
// given one, and computes gradients until it is stopped. SIGINT or SIGTERM
// drains it: it finishes the subtree under way, sends it, deregisters and
// exits; a second signal kills it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
