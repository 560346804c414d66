package cluster

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff is the retry policy of everything that talks to etcd or to
// another process (a worker reconnecting to its coordinator, a coordinator
// campaigning while etcd is away, a leader catching a standby up): waits
// that double from lo, randomised by ±50% so that processes that lost the
// same peer do not come back in step, the doubling stopping at hi (so a
// wait is at most 1.5·hi). NextBackOff gives each wait, Reset starts over.
func Backoff(lo, hi time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     lo,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         hi,
	}
	b.Reset()
	return b
}

// Sleep waits d, or until ctx ends, and reports whether it waited the
// whole d: the wait between two tries of anything that retries.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
