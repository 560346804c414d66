package worker

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// idxImages encodes n images of rows×cols as an IDX file, pixel p of image
// i being (7i + 3p) mod 256.
func idxImages(n, rows, cols int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{0x00000803, uint32(n), uint32(rows), uint32(cols)})
	for i := range n {
		for p := range rows * cols {
			b.WriteByte(byte(7*i + 3*p))
		}
	}
	return b.Bytes()
}

// idxLabels encodes n labels, label i being i mod 10, as an IDX file.
func idxLabels(n int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{0x00000801, uint32(n)})
	for i := range n {
		b.WriteByte(byte(i % 10))
	}
	return b.Bytes()
}

func gzipped(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// tinyMNIST is a data set in MNIST's four files: 12 training and 6 test
// images of 28×28, the training files gzip compressed, the test files not.
func tinyMNIST() map[string][]byte {
	return map[string][]byte{
		dataset.MNISTTrainImages + ".gz": gzipped(idxImages(12, 28, 28)),
		dataset.MNISTTrainLabels + ".gz": gzipped(idxLabels(12)),
		dataset.MNISTTestImages:          idxImages(6, 28, 28),
		dataset.MNISTTestLabels:          idxLabels(6),
	}
}

func fileInfo(name string, data []byte) *dpcnnv1.FileInfo {
	sum := sha256.Sum256(data)
	return &dpcnnv1.FileInfo{Name: name, Size: int64(len(data)), Sha256: hex.EncodeToString(sum[:])}
}

func datasetFile(name string, data []byte) dataset.File {
	f := fileInfo(name, data)
	return dataset.File{Name: f.Name, Size: f.Size, SHA256: f.Sha256}
}

// infos describes files, by name.
func infos(files map[string][]byte) []*dpcnnv1.FileInfo {
	var out []*dpcnnv1.FileInfo
	for name, data := range files {
		out = append(out, fileInfo(name, data))
	}
	slices.SortFunc(out, func(a, b *dpcnnv1.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// fileServer serves FetchDataset over loopback gRPC: the coordinator's side
// of the protocol, with hooks that damage what it sends.
type fileServer struct {
	dpcnnv1.UnimplementedWorkerServiceServer
	files map[string][]byte // what the server announces
	chunk int               // bytes per chunk

	mu      sync.Mutex
	fetched []string // names asked for, call after call
	// damage, when set, changes a file's chunks before they are sent.
	damage func(name string, chunks []*dpcnnv1.FileChunk) []*dpcnnv1.FileChunk
}

func (s *fileServer) FetchDataset(req *dpcnnv1.FetchDatasetRequest, stream grpc.ServerStreamingServer[dpcnnv1.FileChunk]) error {
	s.mu.Lock()
	s.fetched = append(s.fetched, req.GetNames()...)
	damage := s.damage
	s.mu.Unlock()
	for _, name := range req.GetNames() {
		data, ok := s.files[name]
		if !ok {
			return status.Errorf(codes.NotFound, "no file %q", name)
		}
		chunks := []*dpcnnv1.FileChunk{{Info: fileInfo(name, data), Data: data[:min(s.chunk, len(data))]}}
		for off := s.chunk; off < len(data); off += s.chunk {
			chunks = append(chunks, &dpcnnv1.FileChunk{Offset: int64(off), Data: data[off:min(off+s.chunk, len(data))]})
		}
		if damage != nil {
			chunks = damage(name, chunks)
		}
		for _, c := range chunks {
			if err := stream.Send(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *fileServer) takeFetched() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.fetched
	s.fetched = nil
	slices.Sort(out)
	return out
}

// serveWorkerService serves srv on a free loopback port until the test
// ends and returns a client of it.
func serveWorkerService(t *testing.T, srv dpcnnv1.WorkerServiceServer) dpcnnv1.WorkerServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	dpcnnv1.RegisterWorkerServiceServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return dpcnnv1.NewWorkerServiceClient(conn)
}

func TestDatasetCacheFetchesOnceAndLoads(t *testing.T) {
	files := tinyMNIST()
	srv := &fileServer{files: files, chunk: 1000}
	client := serveWorkerService(t, srv)
	cache := DatasetCache{Dir: filepath.Join(t.TempDir(), "cache")}
	ctx := t.Context()

	paths, err := cache.Ensure(ctx, client, infos(files))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := srv.takeFetched(), slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
		t.Errorf("fetched %v, want %v", got, want)
	}
	for name, data := range files {
		got, err := os.ReadFile(paths[name])
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: cached as %s with %d bytes (err %v), want %d bytes", name, paths[name], len(got), err, len(data))
		}
		if want := filepath.Join(cache.Dir, fileInfo(name, data).Sha256+"-"+name); paths[name] != want {
			t.Errorf("%s: cached at %s, want %s", name, paths[name], want)
		}
	}
	train, test, err := LoadDatasetFiles(paths)
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 12 || test.Len() != 6 || train.Labels[11] != 1 || test.Images.Image(5)[1] != byte(7*5+3) {
		t.Errorf("loaded %d training and %d test images, want 12 and 6 with their content", train.Len(), test.Len())
	}

	// A second run finds everything in the cache.
	if _, err := cache.Ensure(ctx, client, infos(files)); err != nil {
		t.Fatal(err)
	}
	if got := srv.takeFetched(); len(got) != 0 {
		t.Errorf("fetched %v from a full cache, want nothing", got)
	}

	// A damaged cache file (same size, other bytes) is fetched again.
	damaged := paths[dataset.MNISTTestLabels]
	data, _ := os.ReadFile(damaged)
	data[len(data)-1] ^= 1
	if err := os.WriteFile(damaged, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Ensure(ctx, client, infos(files)); err != nil {
		t.Fatal(err)
	}
	if got := srv.takeFetched(); !slices.Equal(got, []string{dataset.MNISTTestLabels}) {
		t.Errorf("fetched %v after damaging %s, want only it", got, dataset.MNISTTestLabels)
	}
	if got, _ := os.ReadFile(damaged); !bytes.Equal(got, files[dataset.MNISTTestLabels]) {
		t.Error("the damaged file was not replaced")
	}
	if left, _ := filepath.Glob(filepath.Join(cache.Dir, ".fetch-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A file whose content changed is fetched anew, and its old version
	// goes.
	changed := idxLabels(6)
	changed[len(changed)-1] = 9
	files[dataset.MNISTTestLabels] = changed
	newPaths, err := cache.Ensure(ctx, client, infos(files))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths[dataset.MNISTTestLabels]); !errors.Is(err, os.ErrNotExist) || newPaths[dataset.MNISTTestLabels] == paths[dataset.MNISTTestLabels] {
		t.Errorf("the old version of %s is still cached (stat: %v)", dataset.MNISTTestLabels, err)
	}
	if got, _ := os.ReadFile(newPaths[dataset.MNISTTestLabels]); !bytes.Equal(got, changed) {
		t.Error("the new version was not cached")
	}
}

// TestDatasetCacheRefusesBadDownloads checks that a download that does not
// match what the coordinator announced is refused with a clear error and
// leaves nothing in the cache.
func TestDatasetCacheRefusesBadDownloads(t *testing.T) {
	files := tinyMNIST()
	name := dataset.MNISTTrainImages + ".gz"
	type chunks = []*dpcnnv1.FileChunk
	cases := []struct {
		what   string
		damage func(chunks) chunks
		want   string
	}{
		{"flipped byte", func(c chunks) chunks {
			c[0].Data = slices.Clone(c[0].Data)
			c[0].Data[10] ^= 0x40
			return c
		}, "sha256"},
		{"truncated", func(c chunks) chunks {
			last := c[len(c)-1]
			last.Data = last.Data[:len(last.Data)-5]
			return c
		}, "bytes received, want"},
		{"gap", func(c chunks) chunks { c[1].Offset++; return c }, "offset"},
		{"extra bytes", func(c chunks) chunks {
			size := c[0].Info.Size
			return append(c, &dpcnnv1.FileChunk{Offset: size, Data: make([]byte, 3000)})
		}, "more than its"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			srv := &fileServer{files: files, chunk: 100}
			srv.damage = func(n string, ch chunks) chunks {
				if n != name {
					return ch
				}
				return c.damage(ch)
			}
			cache := DatasetCache{Dir: t.TempDir()}
			_, err := cache.Ensure(t.Context(), serveWorkerService(t, srv), infos(files))
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one about %s containing %q", err, name, c.want)
			}
			if _, err := os.Stat(cache.Path(fileInfo(name, files[name]))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused file kept in the cache (stat: %v)", err)
			}
			if left, _ := filepath.Glob(filepath.Join(cache.Dir, ".fetch-*")); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
		})
	}
}

func TestDatasetCacheRefusesBadFileInfos(t *testing.T) {
	good := fileInfo("a", []byte("x"))
	for _, f := range []*dpcnnv1.FileInfo{
		{Name: "../etc/passwd", Size: 1, Sha256: good.Sha256},
		{Name: "..", Size: 1, Sha256: good.Sha256},
		{Name: "a", Size: -1, Sha256: good.Sha256},
		{Name: "a", Size: 1, Sha256: strings.ToUpper(good.Sha256)},
		{Name: "a", Size: 1, Sha256: "abc"},
	} {
		_, err := DatasetCache{Dir: t.TempDir()}.Ensure(t.Context(), nil, []*dpcnnv1.FileInfo{f})
		if err == nil {
			t.Errorf("file info %v accepted", f)
		}
	}
	if _, err := (DatasetCache{Dir: t.TempDir()}).Ensure(t.Context(), nil, []*dpcnnv1.FileInfo{good, good}); err == nil {
		t.Error("a file listed twice was accepted")
	}
}

// TestDatasetCacheStreamErrors checks what a FetchDataset stream may not
// do: send files not asked for, leave some out, start without a file.
func TestDatasetCacheStreamErrors(t *testing.T) {
	a, b := []byte("alpha"), []byte("beta")
	want := map[string]*dpcnnv1.FileInfo{"a": fileInfo("a", a), "b": fileInfo("b", b)}
	cases := []struct {
		what   string
		chunks []*dpcnnv1.FileChunk
		err    string
	}{
		{"missing file", []*dpcnnv1.FileChunk{{Info: want["a"], Data: a}}, "b: not sent"},
		{"unasked file", []*dpcnnv1.FileChunk{{Info: fileInfo("c", a), Data: a}}, "not asked for"},
		{"no info", []*dpcnnv1.FileChunk{{Data: a}}, "no file info"},
		{"other sum", []*dpcnnv1.FileChunk{{Info: fileInfo("a", b), Data: b}}, "want size"},
		{"twice", []*dpcnnv1.FileChunk{{Info: want["a"], Data: a}, {Info: want["a"], Data: a}}, "sent twice"},
	}
	for _, c := range cases {
		cache := DatasetCache{Dir: t.TempDir()}
		err := cache.receive(chunkSource(c.chunks, nil), want)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one containing %q", c.what, err, c.err)
		}
	}
	// An error of the stream itself comes through.
	cache := DatasetCache{Dir: t.TempDir()}
	broken := errors.New("connection reset")
	if err := cache.receive(chunkSource([]*dpcnnv1.FileChunk{{Info: want["a"], Data: a[:2]}}, broken), want); !errors.Is(err, broken) {
		t.Errorf("error %v, want %v", err, broken)
	}
	// Both files, the second empty-chunked in two pieces, are fine.
	err := cache.receive(chunkSource([]*dpcnnv1.FileChunk{
		{Info: want["a"], Data: a},
		{Info: want["b"], Data: b[:1]}, {Offset: 1, Data: nil}, {Offset: 1, Data: b[1:]},
	}, nil), want)
	if err != nil {
		t.Fatal(err)
	}
}

// chunkSource yields chunks, then end (io.EOF when nil).
func chunkSource(chunks []*dpcnnv1.FileChunk, end error) func() (*dpcnnv1.FileChunk, error) {
	i := 0
	return func() (*dpcnnv1.FileChunk, error) {
		if i < len(chunks) {
			i++
			return chunks[i-1], nil
		}
		if end == nil {
			return nil, io.EOF
		}
		return nil, end
	}
}

// FuzzDatasetCacheReceive feeds arbitrary chunk streams to the receiver: it
// must never panic, and whatever it accepts must be exactly the announced
// bytes.
func FuzzDatasetCacheReceive(f *testing.F) {
	f.Add([]byte("alpha"), uint8(2), int64(0), false)
	f.Add([]byte("alpha"), uint8(1), int64(3), false)
	f.Add([]byte(""), uint8(1), int64(0), true)
	f.Add([]byte("a longer file of some bytes"), uint8(5), int64(-1), true)
	f.Fuzz(func(t *testing.T, data []byte, pieces uint8, skew int64, lie bool) {
		content := []byte("a longer file of some bytes")
		info := fileInfo("f", content)
		// The stream sends data (not necessarily the content) in pieces,
		// the second chunk's offset skewed.
		n := max(int(pieces), 1)
		var chunks []*dpcnnv1.FileChunk
		for i := range n {
			lo, hi := i*len(data)/n, (i+1)*len(data)/n
			c := &dpcnnv1.FileChunk{Offset: int64(lo), Data: data[lo:hi]}
			if i == 0 {
				c.Info = info
				if lie {
					c.Info = fileInfo("f", data)
				}
			}
			if i == 1 {
				c.Offset += skew
			}
			chunks = append(chunks, c)
		}
		cache := DatasetCache{Dir: t.TempDir()}
		err := cache.receive(chunkSource(chunks, nil), map[string]*dpcnnv1.FileInfo{"f": info})
		got, readErr := os.ReadFile(cache.Path(info))
		if err == nil && (readErr != nil || !bytes.Equal(got, content)) {
			t.Fatalf("accepted a stream whose file is %q, want %q", got, content)
		}
		if err != nil && readErr == nil {
			t.Fatalf("refused the stream (%v) but kept the file", err)
		}
	})
}

// A worker with the data set on its disk describes its files to the
// coordinator as the coordinator describes the same files to workers.
func TestLocalDatasetFilesOnTheWire(t *testing.T) {
	dir := t.TempDir()
	files := tinyMNIST()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	local, err := dataset.MNISTFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, want := wireFiles(local), infos(files)
	if !sameFiles(got, want) {
		t.Errorf("the worker describes its files as %v, want %v", got, want)
	}
}
