package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Within runs fn on a thread inside the host's namespace: sockets fn makes
// belong to the host wherever they are used later, so a process reaches
// the lab without the machine being given a route into it.
func (l *Lab) Within(host string, fn func() error) error {
	if _, ok := l.hosts[host]; !ok {
		return fmt.Errorf("netlab: no host %q in the lab", host)
	}
	path := filepath.Join("/var/run/netns", l.Namespace(host))
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
		return fmt.Errorf("netlab: enter %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the lab: keep it locked, so that it ends
		// with this goroutine instead of running others.
		return errors.Join(fnErr, fmt.Errorf("netlab: leave %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Listen listens on the host's address at port (0: a free one). The
// connections it accepts delay what they send by the link's latency.
func (l *Lab) Listen(host string, port int) (net.Listener, error) {
	var lis net.Listener
	err := l.Within(host, func() (err error) {
		lis, err = net.Listen("tcp", net.JoinHostPort(l.hosts[host], strconv.Itoa(port)))
		return err
	})
	if err != nil {
		return nil, err
	}
	return delayListener{lis, l.cfg.Link.Latency}, nil
}

type delayListener struct {
	net.Listener
	delay time.Duration
}

func (d delayListener) Accept() (net.Conn, error) {
	c, err := d.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newDelayConn(c, d.delay), nil
}

// Dialer returns a dial function, for gRPC and etcd clients, whose TCP
// connections start from the host and delay what they send by the link's
// latency.
func (l *Lab) Dialer(host string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (conn net.Conn, err error) {
		// The socket is made (and the connection begun) on the thread in
		// the namespace; it stays the host's wherever it is used.
		err = l.Within(host, func() error {
			conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		if err != nil {
			return nil, err
		}
		return newDelayConn(conn, l.cfg.Link.Latency), nil
	}
}
