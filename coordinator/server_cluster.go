package coordinator

import (
	"context"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keyspace "github.com/dpcnn/dpcnn/cluster"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// ListWorkers implements ClusterService: the workers registered in etcd and
// those that joined this leader, by id.
func (s *Server) ListWorkers(ctx context.Context, _ *dpcnnv1.ListWorkersRequest) (*dpcnnv1.ListWorkersResponse, error) {
	recs, err := keyspace.ListWorkers(ctx, s.cfg.Etcd, s.cfg.Prefix)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "list workers: %v", err)
	}
	byID := map[string]*dpcnnv1.WorkerInfo{}
	for _, r := range recs {
		byID[r.ID] = &dpcnnv1.WorkerInfo{
			Id: r.ID, Address: r.Address, Backend: r.Backend, Cores: int32(r.Cores), Version: r.Version,
			ImagesPerSec: r.Speed, State: dpcnnv1.WorkerState_WORKER_STATE_JOINING,
		}
	}
	s.mu.Lock()
	running := ""
	if s.driver != nil {
		running = s.driver.id
	}
	for id, w := range s.workers {
		info, registered := byID[id]
		if w.lost && w.stream == nil && !registered {
			continue // gone, and its registration expired (or it never had one)
		}
		j := w.join
		info = &dpcnnv1.WorkerInfo{
			Id: id, Address: j.Address, Backend: j.Backend, BackendDetail: j.BackendDetail, Cores: j.Cores,
			Version: j.Version, ImagesPerSec: j.ImagesPerSec, JoinedUnixNanos: w.joined.UnixNano(),
			State: dpcnnv1.WorkerState_WORKER_STATE_JOINING,
		}
		if w.lost {
			info.State = dpcnnv1.WorkerState_WORKER_STATE_LOST
		}
		if ws := w.stream; ws != nil {
			info.LastSeenUnixNanos = ws.lastSeen.Load()
			ws.mu.Lock()
			info.State = dpcnnv1.WorkerState_WORKER_STATE_IDLE
			if len(ws.outstanding) > 0 {
				info.State = dpcnnv1.WorkerState_WORKER_STATE_BUSY
			}
			if ws.measured > 0 {
				info.ImagesPerSec = ws.measured
			}
			info.ReducerGroups, info.Reduces = int32(ws.reducerGroups), ws.reduce != ""
			if ws.job != "" && ws.job == running {
				info.JobId = ws.job
			}
			ws.mu.Unlock()
		}
		byID[id] = info
	}
	s.mu.Unlock()
	out := &dpcnnv1.ListWorkersResponse{}
	for _, info := range byID {
		out.Workers = append(out.Workers, info)
	}
	sort.Slice(out.Workers, func(i, j int) bool { return out.Workers[i].Id < out.Workers[j].Id })
	return out, nil
}
