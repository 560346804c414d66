package netlab

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// The delay line delivers every byte, in order, each write no sooner than
// its delay, and Close sends what is still queued first. It needs no lab:
// it runs over loopback on any machine.
func TestDelayConnDeliversInOrderAfterTheDelay(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	raw, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const delay = 3 * time.Millisecond
	c := newDelayConn(raw, delay)
	r := rand.New(rand.NewPCG(1, 2))
	var want bytes.Buffer
	start := time.Now()
	for range 200 {
		p := make([]byte, 1+r.IntN(70000)) // awkward sizes, some past a segment
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		want.Write(p)
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if took := time.Since(start); took < delay {
		t.Errorf("everything arrived in %s, sooner than the delay %s", took, delay)
	}
	if !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, not the %d written in order", len(b), want.Len())
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Error("a write after Close succeeded")
	}
}

// No delay, no wrapper: an unshaped lab costs its sockets nothing.
func TestDelayConnZeroIsTheConnItself(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if newDelayConn(a, 0) != a {
		t.Error("a zero delay wrapped the connection")
	}
}
