package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netLab is a network of hosts made of Linux network namespaces: every
// host has its own address on one subnet, joined through a bridge that
// lives in a namespace of its own, so the lab touches nothing of the
// machine's own network and no packet leaves it. A host can be cut off
// (its bridge port taken down: a partition, not a crash) and reconnected.
type netLab struct {
	t      *testing.T
	prefix string
	hosts  map[string]string // name → address
}

// labSubnet is the lab's private subnet; it exists only inside the lab's
// namespaces.
const labSubnet = "10.199.77."

// newNetLab makes a lab with the named hosts, or skips the test with the
// reason it cannot (it needs root and iproute2); DPCNN_REQUIRE_NETNS=1
// turns the skip into a failure.
func newNetLab(t *testing.T, names ...string) *netLab {
	t.Helper()
	skip := func(format string, a ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, a...)
		if os.Getenv("DPCNN_REQUIRE_NETNS") == "1" {
			t.Fatalf("%s (DPCNN_REQUIRE_NETNS=1)", msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		skip("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("network namespaces need iproute2's ip command: %v", err)
	}
	l := &netLab{t: t, prefix: fmt.Sprintf("dpcnn%d-", os.Getpid()), hosts: map[string]string{}}
	sw := l.ns("switch")
	if out, err := exec.Command("ip", "netns", "add", sw).CombinedOutput(); err != nil {
		skip("cannot make a network namespace: ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", sw).Run() })
	// Where namespaces can be made but not wired (a container without
	// the rights for bridges or veth pairs), the test skips too.
	setup := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			skip("cannot build the lab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	setup("-n", sw, "link", "add", "br0", "type", "bridge")
	setup("-n", sw, "link", "set", "br0", "up")
	for i, name := range names {
		ns, addr := l.ns(name), fmt.Sprintf("%s%d", labSubnet, i+2)
		setup("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		setup("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", l.port(name), "netns", sw)
		setup("-n", ns, "link", "set", "lo", "up")
		setup("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		setup("-n", ns, "link", "set", "eth0", "up")
		setup("-n", sw, "link", "set", l.port(name), "master", "br0", "up")
		l.hosts[name] = addr
	}
	return l
}

func (l *netLab) ns(host string) string { return l.prefix + host }

// port is the host's bridge port in the switch namespace.
func (l *netLab) port(host string) string { return "p-" + host }

// ip runs an ip command, failing the test if it fails.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addr is the host's address.
func (l *netLab) addr(host string) string {
	a, ok := l.hosts[host]
	if !ok {
		l.t.Fatalf("no host %s in the lab", host)
	}
	return a
}

// start runs a command on a host (ip netns exec execs it, so the process
// is the command's own and signals reach it).
func (l *netLab) start(host, name, path string, args ...string) *process {
	l.t.Helper()
	return startProcess(l.t, name, "ip", append([]string{"netns", "exec", l.ns(host), path}, args...)...)
}

// cut takes the host off the network; heal puts it back.
func (l *netLab) cut(host string)  { l.ip("-n", l.ns("switch"), "link", "set", l.port(host), "down") }
func (l *netLab) heal(host string) { l.ip("-n", l.ns("switch"), "link", "set", l.port(host), "up") }

// within runs fn on a thread inside the host's namespace: sockets fn makes
// belong to the host, so the test process reaches the lab without giving
// the machine a route into it.
func (l *netLab) within(host string, fn func() error) error {
	path := filepath.Join("/var/run/netns", l.ns(host))
	target, err := os.Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer home.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the lab: keep it locked, so that it ends
		// with this goroutine instead of running others.
		return errors.Join(fnErr, fmt.Errorf("leave %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// dialer returns a dial function, for gRPC and etcd clients, whose
// connections start from the host.
func (l *netLab) dialer(host string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (conn net.Conn, err error) {
		// The socket is made (and the connection begun) on the thread
		// in the namespace; it stays the host's wherever it is used.
		err = l.within(host, func() error {
			conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
}

// TestNetLab checks the lab itself: hosts reach each other, a cut host is
// unreachable, and a healed one reachable again.
func TestNetLab(t *testing.T) {
	l := newNetLab(t, "a", "b")
	var lis net.Listener
	if err := l.within("b", func() (err error) {
		lis, err = net.Listen("tcp", l.addr("b")+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c, err := l.dialer("a")(ctx, lis.Addr().String())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("a cannot reach b: %v", err)
	}
	if _, err := net.DialTimeout("tcp", lis.Addr().String(), 300*time.Millisecond); err == nil {
		t.Fatalf("the machine itself reaches the lab at %s", lis.Addr())
	}
	l.cut("b")
	if err := dial(); err == nil {
		t.Fatal("a reaches b cut off")
	}
	l.heal("b")
	if err := dial(); err != nil {
		t.Fatalf("a cannot reach b healed: %v", err)
	}
}
