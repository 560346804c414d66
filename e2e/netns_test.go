package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/dpcnn/dpcnn/netlab"
)

// netLab is a network of hosts for a test: a netlab.Lab (a network
// namespace per host, joined through a bridge in a namespace of its own, so
// no packet leaves it), with the test's failures for its errors.
type netLab struct {
	t *testing.T
	*netlab.Lab
}

// newNetLab makes a lab with the named hosts, or skips the test with the
// reason it cannot (it needs root and iproute2); DPCNN_REQUIRE_NETNS=1
// turns the skip into a failure.
func newNetLab(t *testing.T, names ...string) *netLab {
	t.Helper()
	l, err := netlab.New(netlab.Config{Hosts: names})
	if errors.Is(err, netlab.ErrUnsupported) {
		if os.Getenv("DPCNN_REQUIRE_NETNS") == "1" {
			t.Fatalf("%v (DPCNN_REQUIRE_NETNS=1)", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &netLab{t: t, Lab: l}
}

// addr is the host's address.
func (l *netLab) addr(host string) string {
	a := l.Addr(host)
	if a == "" {
		l.t.Fatalf("no host %s in the lab", host)
	}
	return a
}

// start runs a command on a host (ip netns exec execs it, so the process
// is the command's own and signals reach it).
func (l *netLab) start(host, name, path string, args ...string) *process {
	l.t.Helper()
	return startProcess(l.t, name, "ip", append([]string{"netns", "exec", l.Namespace(host), path}, args...)...)
}

// cut takes the host off the network; heal puts it back.
func (l *netLab) cut(host string) {
	l.t.Helper()
	if err := l.Cut(host); err != nil {
		l.t.Fatal(err)
	}
}

func (l *netLab) heal(host string) {
	l.t.Helper()
	if err := l.Heal(host); err != nil {
		l.t.Fatal(err)
	}
}

// within and dialer make sockets on a host: see netlab.
func (l *netLab) within(host string, fn func() error) error { return l.Within(host, fn) }

func (l *netLab) dialer(host string) func(ctx context.Context, addr string) (net.Conn, error) {
	return l.Dialer(host)
}
