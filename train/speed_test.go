package train

import (
	"testing"
	"time"
)

// ObserveSpeed takes the first measurement as it is, averages later ones
// with the estimate, and ignores measurements that give no positive,
// finite rate.
func TestObserveSpeed(t *testing.T) {
	s := ObserveSpeed(0, 100, time.Second)
	if s != 100 {
		t.Fatalf("first measurement: %v images/s, want 100", s)
	}
	if s = ObserveSpeed(s, 100, 500*time.Millisecond); s != 150 {
		t.Fatalf("second measurement: %v images/s, want the mean 150", s)
	}
	for _, m := range []struct {
		images int
		d      time.Duration
	}{{0, time.Second}, {100, 0}, {100, -time.Second}} {
		if got := ObserveSpeed(s, m.images, m.d); got != s {
			t.Errorf("%d images in %v: estimate %v, want it unchanged (%v)", m.images, m.d, got, s)
		}
	}
}
