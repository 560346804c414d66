package coordinator

import (
	"time"

	keyspace "github.com/dpcnn/dpcnn/cluster"
)

// schedule runs the queued jobs one at a time, oldest first, for as long
// as the term lasts.
func (s *Server) schedule(l *leadership) {
	for {
		d := s.nextDriver(l)
		if d == nil {
			select {
			case <-l.wake:
				continue
			case <-l.ctx.Done():
				return
			}
		}
		d.run()
		s.mu.Lock()
		s.driver = nil
		s.mu.Unlock()
		if l.ctx.Err() != nil {
			return
		}
		if !d.ended {
			keyspace.Sleep(l.ctx, time.Second) // it stopped short (etcd trouble): retry soon
		}
	}
}

// nextDriver makes the driver of the oldest job that has not ended, and
// hands it the workers' open streams; nil when there is no such job.
func (s *Server) nextDriver(l *leadership) *driver {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next *jobEntry
	for _, e := range s.jobs {
		if !e.status.Ended() && (next == nil || e.revision < next.revision) {
			next = e
		}
	}
	if next == nil {
		return nil
	}
	d := newDriver(s, l, next)
	s.driver = d
	for _, w := range s.workers {
		if w.stream != nil {
			d.inbox.Put(streamOpened{w.stream})
		}
	}
	return d
}
