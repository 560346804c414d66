package simulate

import (
	"strings"
	"testing"
	"time"

	"github.com/dpcnn/dpcnn/benchmark"
)

// Calibrate fits the costs from a measured weak-scaling result and says
// what is wrong with one it cannot use.
func TestCalibrate(t *testing.T) {
	link := Link{BitsPerSec: 10e9, Latency: 200 * time.Microsecond}
	one := benchmark.Point{Workers: 1, PhasesMs: benchmark.Phases{Compute: 50, Transfer: 2.0, Optimizer: 0.6}}
	eight := benchmark.Point{Workers: 8, PhasesMs: benchmark.Phases{Compute: 50, Reduce: 0.7, Broadcast: 0.16}}
	m := benchmark.Scaling{Mode: "weak", PerWorkerBatch: 100, MicroBatch: 50, Points: []benchmark.Point{one, eight}}
	c, err := Calibrate(m, link, 123552)
	if err != nil {
		t.Fatal(err)
	}
	wire := 2 * (float64(4*123552)*8/10e9*1000 + 0.2) // ms
	for name, got := range map[string][2]float64{
		"compute (a micro-batch: half the one-worker compute)": {ms(c.Compute), 25},
		"message (half the transfer over the wire time)":       {ms(c.Message), (2.0 - wire) / 2},
		"send (the broadcast per worker)":                      {ms(c.Send), 0.02},
		"reduce (per result but the last)":                     {ms(c.Reduce), 0.1},
		"optimizer (less its one reduce)":                      {ms(c.Optimizer), 0.5},
	} {
		if d := got[0] - got[1]; d > 1e-5 || d < -1e-5 { // to the nanosecond the Durations keep
			t.Errorf("%s: %.6f ms, want %.6f", name, got[0], got[1])
		}
	}
	for _, tc := range []struct {
		edit func(*benchmark.Scaling, *Link)
		want string
	}{
		{func(m *benchmark.Scaling, _ *Link) { m.Mode = "strong" }, "want weak scaling"},
		{func(m *benchmark.Scaling, _ *Link) { m.Points = m.Points[1:] }, "no one-worker point"},
		{func(_ *benchmark.Scaling, l *Link) { l.BitsPerSec = 0 }, "no link bandwidth"},
		{func(m *benchmark.Scaling, _ *Link) { m.Points = []benchmark.Point{{Workers: 1}} }, "no compute time"},
	} {
		mm, l := m, link
		mm.Points = append([]benchmark.Point(nil), m.Points...)
		tc.edit(&mm, &l)
		if _, err := Calibrate(mm, l, 123552); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v; want an error saying %q", err, tc.want)
		}
	}
}
