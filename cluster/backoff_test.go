package cluster

import (
	"context"
	"testing"
	"time"
)

// The waits double from lo to hi, each within ±50% of its interval, and
// Reset starts over.
func TestBackoff(t *testing.T) {
	b := Backoff(100*time.Millisecond, time.Second)
	for i, interval := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		interval *= time.Millisecond
		if d := b.NextBackOff(); d < interval/2 || d > interval*3/2 {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, d, interval/2, interval*3/2)
		}
	}
	b.Reset()
	if d := b.NextBackOff(); d > 150*time.Millisecond {
		t.Errorf("wait after Reset = %v, want at most 150ms", d)
	}
}

// Sleep waits the whole duration, or returns false as soon as its context
// ends.
func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep(1ms) = false with a live context, want true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep(1h) = true, want false once the context ended")
	}
	if waited := time.Since(start); waited > time.Minute {
		t.Errorf("Sleep waited %v after its context ended", waited)
	}
}
