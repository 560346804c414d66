package coordinator

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// FetchDataset implements WorkerService.
func (s *Server) FetchDataset(req *dpcnnv1.FetchDatasetRequest, stream grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	want := s.files
	if len(req.Names) > 0 {
		want = nil
		for _, name := range req.Names {
			var found *dpcnnv1.FileInfo
			for _, f := range s.files {
				if f.Name == name {
					found = f
				}
			}
			if found == nil {
				return status.Errorf(codes.NotFound, "fetch dataset: no file %q (the coordinator has %s)", name, fileNames(s.files))
			}
			want = append(want, found)
		}
	}
	for _, f := range want {
		if err := sendFile(stream, f, s.filePaths[f.Name]); err != nil {
			return err
		}
	}
	return nil
}

func fileNames(files []*dpcnnv1.FileInfo) string {
	out := ""
	for i, f := range files {
		if i > 0 {
			out += ", "
		}
		out += f.Name
	}
	return out
}
