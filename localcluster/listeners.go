package localcluster

import (
	"errors"
	"net"
	"sync"
)

// joinedListener accepts the connections of several listeners, so that one
// gRPC server serves them all (the coordinator on loopback for cnnctl and
// inside a benchmark's network lab for its workers). Addr is the first
// listener's.
type joinedListener struct {
	all     []net.Listener
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	errOnce sync.Once
	err     error
	wg      sync.WaitGroup
}

func joinListeners(all ...net.Listener) net.Listener {
	j := &joinedListener{all: all, conns: make(chan net.Conn), done: make(chan struct{})}
	for _, l := range all {
		j.wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					j.errOnce.Do(func() { j.err = err })
					j.Close()
					return
				}
				select {
				case j.conns <- c:
				case <-j.done:
					c.Close()
					return
				}
			}
		})
	}
	return j
}

func (j *joinedListener) Accept() (net.Conn, error) {
	select {
	case c := <-j.conns:
		return c, nil
	case <-j.done:
		if j.err != nil && !errors.Is(j.err, net.ErrClosed) {
			return nil, j.err
		}
		return nil, net.ErrClosed
	}
}

func (j *joinedListener) Close() error {
	j.once.Do(func() {
		close(j.done)
		for _, l := range j.all {
			l.Close()
		}
	})
	return nil
}

func (j *joinedListener) Addr() net.Addr { return j.all[0].Addr() }
