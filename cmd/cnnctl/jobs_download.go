package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

func newDownloadCmd(e *env) *cobra.Command {
	var cf clientFlags
	var modelFile, checkpoint, logits bool
	var out string
	cmd := &cobra.Command{
		Use:   "download JOB (--model | --checkpoint) -o FILE",
		Short: "Download a job's trained model (ONNX) or latest checkpoint",
		Long: `Download a job's trained model as ONNX (--model), built from its latest
checkpoint, or the checkpoint itself (--checkpoint), for 'cnnctl eval' and
'cnnctl export'. The file's size and SHA-256 are checked against what the
coordinator sent before it replaces FILE.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelFile == checkpoint {
				return errors.New("say what to download: --model or --checkpoint")
			}
			if out == "" {
				return errors.New("--out (-o) FILE is required")
			}
			if logits && !modelFile {
				return errors.New("--logits applies to --model only")
			}
			c, err := cf.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var info *dpcnnv1.FileInfo
			if modelFile {
				info, err = c.downloadModel(cmd.Context(), args[0], logits, out)
			} else {
				info, err = c.downloadCheckpoint(cmd.Context(), args[0], out)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: %d bytes, sha256 %s\n", out, info.Size, info.Sha256)
			return nil
		},
	}
	cf.register(cmd.Flags())
	cmd.Flags().BoolVar(&modelFile, "model", false, "download the trained model as ONNX")
	cmd.Flags().BoolVar(&checkpoint, "checkpoint", false, "download the latest checkpoint")
	cmd.Flags().BoolVar(&logits, "logits", false, "with --model: add the pre-softmax scores as an output named logits")
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write")
	return cmd
}

// downloadCheckpoint saves a job's latest checkpoint to path.
func (c *client) downloadCheckpoint(ctx context.Context, jobID, path string) (*dpcnnv1.FileInfo, error) {
	var info *dpcnnv1.FileInfo
	err := c.do(ctx, "download checkpoint of "+jobID, func(ctx context.Context) error {
		stream, err := c.jobs().DownloadCheckpoint(ctx, &dpcnnv1.DownloadCheckpointRequest{JobId: jobID})
		if err != nil {
			return err
		}
		info, err = receiveFile(stream, path)
		return err
	})
	return info, err
}

// downloadModel saves a job's trained model as ONNX to path.
func (c *client) downloadModel(ctx context.Context, jobID string, logits bool, path string) (*dpcnnv1.FileInfo, error) {
	var info *dpcnnv1.FileInfo
	err := c.do(ctx, "download model of "+jobID, func(ctx context.Context) error {
		stream, err := c.jobs().DownloadModel(ctx, &dpcnnv1.DownloadModelRequest{JobId: jobID, Format: dpcnnv1.ModelFormat_MODEL_FORMAT_ONNX, Logits: logits})
		if err != nil {
			return err
		}
		info, err = receiveFile(stream, path)
		return err
	})
	return info, err
}

// receiveFile writes the one file a stream of chunks carries to path,
// checking that the chunks are contiguous and that their bytes have the size
// and SHA-256 the first chunk announced. The file appears at path, complete,
// only once it checks out; otherwise path is left as it was.
func receiveFile(stream grpc.ServerStreamingClient[dpcnnv1.FileChunk], path string) (info *dpcnnv1.FileInfo, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".part*")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	var got int64
	for {
		chunk, rerr := stream.Recv()
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
		if chunk.Info != nil {
			if info != nil {
				return nil, fmt.Errorf("coordinator sent a second file %q after %q", chunk.Info.Name, info.Name)
			}
			info = chunk.Info
			if info.Size < 0 || len(info.Sha256) != sha256.Size*2 {
				return nil, fmt.Errorf("coordinator sent a bad file description: size %d, sha256 %q", info.Size, info.Sha256)
			}
		} else if info == nil {
			return nil, errors.New("coordinator sent file data before the file's description")
		}
		if chunk.Offset != got {
			return nil, fmt.Errorf("%s: chunk at offset %d, want %d", info.Name, chunk.Offset, got)
		}
		if got+int64(len(chunk.Data)) > info.Size {
			return nil, fmt.Errorf("%s: more than the announced %d bytes", info.Name, info.Size)
		}
		h.Write(chunk.Data)
		if _, err := tmp.Write(chunk.Data); err != nil {
			return nil, err
		}
		got += int64(len(chunk.Data))
	}
	if info == nil {
		return nil, errors.New("coordinator sent no file")
	}
	if got != info.Size {
		return nil, fmt.Errorf("%s: got %d bytes, want %d", info.Name, got, info.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != info.Sha256 {
		return nil, fmt.Errorf("%s: sha256 %s, want %s: the download is corrupt", info.Name, sum, info.Sha256)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return info, nil
}
