package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

// newLab builds a lab for a test, or skips the test where the machine
// cannot (not root, no iproute2); DPCNN_REQUIRE_NETNS=1 turns the skip into
// a failure, as CI sets it.
func newLab(t *testing.T, link Link, hosts ...string) *Lab {
	t.Helper()
	l, err := New(Config{Hosts: hosts, Link: link})
	if errors.Is(err, ErrUnsupported) && os.Getenv("DPCNN_REQUIRE_NETNS") != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// echoServer answers every connection on the host with what it reads.
func echoServer(t *testing.T, l *Lab, host string) net.Listener {
	t.Helper()
	lis, err := l.Listen(host, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return lis
}

func dial(t *testing.T, l *Lab, from string, addr net.Addr) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return l.Dialer(from)(ctx, addr.String())
}

// Hosts reach each other at their addresses, the machine itself does not
// reach them, and a cut host is unreachable until healed.
func TestLabHostsReachEachOtherOnly(t *testing.T) {
	l := newLab(t, Link{}, "a", "b")
	lis := echoServer(t, l, "b")
	if got, want := lis.Addr().(*net.TCPAddr).IP.String(), l.Addr("b"); got != want {
		t.Fatalf("b listens at %s, want its address %s", got, want)
	}
	if c, err := dial(t, l, "a", lis.Addr()); err != nil {
		t.Fatalf("a cannot reach b: %v", err)
	} else {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp", lis.Addr().String(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("the machine itself reaches the lab at %s", lis.Addr())
	}
	if err := l.Cut("b"); err != nil {
		t.Fatal(err)
	}
	if c, err := dial(t, l, "a", lis.Addr()); err == nil {
		c.Close()
		t.Fatal("a reaches b cut off")
	}
	if err := l.Heal("b"); err != nil {
		t.Fatal(err)
	}
	// Healed, b is reachable again, though not at once: the kernel may
	// still be resolving b's address from the dial made while cut off,
	// and asks again only every second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial(t, l, "a", lis.Addr())
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a cannot reach b healed: %v", err)
		}
	}
}

// A round trip takes at least twice the link's latency (once each way),
// and a transfer at least its size over the link's rate (less the token
// buckets' bursts). Only the lower bounds are checked, which no slow
// machine can break; the figures are logged.
func TestLabShapesLinks(t *testing.T) {
	const latency, rate = 2 * time.Millisecond, 100e6
	l := newLab(t, Link{BitsPerSec: rate, Latency: latency}, "a", "b")
	lis := echoServer(t, l, "b")
	c, err := dial(t, l, "a", lis.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rtts []time.Duration
	buf := make([]byte, 8)
	for range 20 {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	t.Logf("round trips with %s each way: min %s, median %s, max %s", latency, rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1])
	if rtts[0] < 2*latency {
		t.Errorf("a round trip of %s, less than twice the latency %s", rtts[0], latency)
	}

	const size = 2 << 20
	start := time.Now()
	go func() {
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// Each way passes two buckets, each of which may let a burst through
	// unshaped.
	burst := 2 * max(int64(rate/8/1000), 128<<10)
	least := time.Duration(float64(size-burst) * 8 / rate * float64(time.Second))
	t.Logf("%d bytes there and back at %g bit/s: %s (%.0f Mbit/s)", size, rate, took, size*8/took.Seconds()/1e6)
	if took < least {
		t.Errorf("%d bytes at %g bit/s took %s, less than the %s the rate allows", size, rate, took, least)
	}
}

func TestLabRefusesBadConfigs(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Hosts: []string{"a", "a"}},
		{Hosts: []string{"switch"}},
		{Hosts: []string{"a-name-far-too-long"}},
		{Hosts: []string{"a"}, Link: Link{BitsPerSec: -1}},
	} {
		l, err := New(cfg)
		if errors.Is(err, ErrUnsupported) {
			continue // refused for the machine, before the names were looked at
		}
		if err == nil {
			l.Close()
			t.Errorf("%+v: no error", cfg)
		}
	}
}
