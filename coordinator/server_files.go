package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/dataset"
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
