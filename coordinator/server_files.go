package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/model"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// fileInfo is the wire's description of a file.
func fileInfo(f dataset.File) *dpcnnv1.FileInfo {
	return &dpcnnv1.FileInfo{Name: f.Name, Size: f.Size, Sha256: f.SHA256}
}

// describeFile describes the file at path under name for the wire.
func describeFile(path, name string) (*dpcnnv1.FileInfo, error) {
	f, err := dataset.DescribeFile(path, name)
	if err != nil {
		return nil, err
	}
	return fileInfo(f), nil
}

// sendFile streams the file at path as info describes it, in chunks of at
// most dpcnnv1.ChunkSize; the receiver checks size and sum.
func sendFile(stream grpc.ServerStreamingServer[dpcnnv1.FileChunk], info *dpcnnv1.FileInfo, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return status.Errorf(codes.Internal, "send %s: %v", info.Name, err)
	}
	defer f.Close()
	buf := make([]byte, dpcnnv1.ChunkSize)
	for offset := int64(0); ; {
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), info.Size-offset)])
		if err != nil {
			return status.Errorf(codes.Internal, "send %s: at byte %d of %d: %v", info.Name, offset, info.Size, err)
		}
		chunk := &dpcnnv1.FileChunk{Offset: offset, Data: buf[:n]}
		if offset == 0 {
			chunk.Info = info
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
		if offset += int64(n); offset >= info.Size {
			return nil
		}
	}
}

// sendBytes streams data as one file named name.
func sendBytes(stream grpc.ServerStreamingServer[dpcnnv1.FileChunk], name string, data []byte) error {
	sum := sha256.Sum256(data)
	info := &dpcnnv1.FileInfo{Name: name, Size: int64(len(data)), Sha256: hex.EncodeToString(sum[:])}
	for offset := 0; ; {
		n := min(dpcnnv1.ChunkSize, len(data)-offset)
		chunk := &dpcnnv1.FileChunk{Offset: int64(offset), Data: data[offset : offset+n]}
		if offset == 0 {
			chunk.Info = info
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
		if offset += n; offset >= len(data) {
			return nil
		}
	}
}

// checkpointPath returns the path of a job's latest checkpoint, or
// FAILED_PRECONDITION when it has none.
func (s *Server) checkpointPath(id string) (string, error) {
	e, _, err := s.entry(id)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	path := e.status.Checkpoint
	s.mu.Unlock()
	if path == "" {
		return "", status.Errorf(codes.FailedPrecondition, "job %s has no checkpoint yet", id)
	}
	return path, nil
}

// DownloadCheckpoint implements JobService.
func (s *Server) DownloadCheckpoint(req *dpcnnv1.DownloadCheckpointRequest, stream grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	path, err := s.checkpointPath(req.JobId)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return checkpointReadError(req.JobId, path, err)
	}
	return sendBytes(stream, filepath.Base(path), data)
}

// checkpointReadError answers a download whose checkpoint cannot be read.
// A file that is not there yet is a leader that took over before the
// checkpoint reached it (a standby that joined late, brought up to date in
// the background): worth a retry, unlike a damaged file.
func checkpointReadError(id, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return status.Errorf(codes.Unavailable, "job %s: checkpoint %s is not on this coordinator yet (it took over before the file reached it); retry shortly", id, filepath.Base(path))
	}
	return status.Errorf(codes.Internal, "job %s: read checkpoint: %v", id, err)
}

// DownloadModel implements JobService: the model of the job's latest
// checkpoint, exported to ONNX as asked.
func (s *Server) DownloadModel(req *dpcnnv1.DownloadModelRequest, stream grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	switch req.Format {
	case dpcnnv1.ModelFormat_MODEL_FORMAT_UNSPECIFIED, dpcnnv1.ModelFormat_MODEL_FORMAT_ONNX:
	default:
		return status.Errorf(codes.InvalidArgument, "download model: format %v", req.Format)
	}
	path, err := s.checkpointPath(req.JobId)
	if err != nil {
		return err
	}
	c, err := ReadCheckpointFile(path)
	if err != nil {
		return checkpointReadError(req.JobId, path, err)
	}
	var buf bytes.Buffer
	if err := model.ExportONNX(&buf, c.Spec, c.ModelParams(), model.ONNXOptions{Logits: req.Logits, ProducerVersion: s.cfg.Version}); err != nil {
		return status.Errorf(codes.Internal, "job %s: %v", req.JobId, err)
	}
	return sendBytes(stream, modelFileName, buf.Bytes())
}

// modelFileName is the name of a job's exported model in DataDir/jobs/<id>/;
// its checkpoints are named by checkpointFileName.
const modelFileName = "model.onnx"

func (s *Server) jobDir(id string) string {
	return filepath.Join(s.cfg.DataDir, "jobs", id)
}
