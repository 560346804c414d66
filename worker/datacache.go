package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
)

// DatasetCache keeps data set files fetched from a coordinator in a folder,
// each under its SHA-256 ("<sha256>-<name>"), so a file is fetched once per
// content, a changed file is fetched again, and nothing is trusted without
// its sum being checked.
type DatasetCache struct {
	// Dir is the cache folder; it is created when missing.
	Dir string
}

// Path is where the cache keeps the file f.
func (c DatasetCache) Path(f *dpcnnv1.FileInfo) string {
	return filepath.Join(c.Dir, f.GetSha256()+"-"+f.GetName())
}

// Ensure makes sure every file of want is in the cache with the content
// want pins, fetching the missing and damaged ones with one FetchDataset
// call on client, and returns each file's path by name. A cached file whose
// size or sum is wrong is deleted and fetched again; a fetched file whose
// size or sum is wrong is refused and not kept.
func (c DatasetCache) Ensure(ctx context.Context, client dpcnnv1.WorkerServiceClient, want []*dpcnnv1.FileInfo) (map[string]string, error) {
	if len(want) == 0 {
		return nil, errors.New("worker: data set: the coordinator lists no files")
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("worker: data set cache: %w", err)
	}
	paths := make(map[string]string, len(want))
	missing := make(map[string]*dpcnnv1.FileInfo)
	var names []string
	for _, f := range want {
		if err := checkFileInfo(f); err != nil {
			return nil, fmt.Errorf("worker: data set: %w", err)
		}
		if _, dup := paths[f.Name]; dup {
			return nil, fmt.Errorf("worker: data set: file %s listed twice", f.Name)
		}
		path := c.Path(f)
		paths[f.Name] = path
		ok, err := fileMatches(path, f)
		if err != nil {
			return nil, fmt.Errorf("worker: data set cache: %w", err)
		}
		if !ok {
			missing[f.Name] = f
			names = append(names, f.Name)
		}
	}
	if len(missing) == 0 {
		return paths, nil
	}
	stream, err := client.FetchDataset(ctx, &dpcnnv1.FetchDatasetRequest{Names: names})
	if err != nil {
		return nil, fmt.Errorf("worker: fetch data set %s: %w", strings.Join(names, ", "), err)
	}
	if err := c.receive(stream.Recv, missing); err != nil {
		return nil, fmt.Errorf("worker: fetch data set: %w", err)
	}
	for _, f := range missing {
		c.pruneOthers(f)
	}
	return paths, nil
}

// pruneOthers removes the cached versions of f's name with other content:
// a data set that changed leaves no stale copies behind. It is best effort.
func (c DatasetCache) pruneOthers(f *dpcnnv1.FileInfo) {
	stale, _ := filepath.Glob(filepath.Join(c.Dir, strings.Repeat("[0-9a-f]", 64)+"-"+globEscape(f.Name)))
	for _, path := range stale {
		if path != c.Path(f) {
			os.Remove(path)
		}
	}
}

// globEscape quotes the characters filepath.Match gives a meaning.
func globEscape(name string) string {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// receive stores the files of a FetchDataset stream, read with recv until
// io.EOF, in the cache. Every file must be one of want, with its size and
// sum, and every file of want must come; a file is renamed into place only
// once its bytes have been checked.
func (c DatasetCache) receive(recv func() (*dpcnnv1.FileChunk, error), want map[string]*dpcnnv1.FileInfo) error {
	var cur *download
	defer func() {
		if cur != nil {
			cur.discard()
		}
	}()
	got := make(map[string]bool, len(want))
	for {
		chunk, err := recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if info := chunk.GetInfo(); info != nil {
			if cur != nil {
				if err := cur.finish(); err != nil {
					return err
				}
				got[cur.info.Name] = true
				cur = nil
			}
			w, ok := want[info.GetName()]
			switch {
			case !ok:
				return fmt.Errorf("%s: not asked for", info.GetName())
			case got[info.GetName()]:
				return fmt.Errorf("%s: sent twice", info.GetName())
			case info.GetSize() != w.Size || info.GetSha256() != w.Sha256:
				return fmt.Errorf("%s: sent with size %d and sha256 %s, want size %d and sha256 %s",
					info.GetName(), info.GetSize(), info.GetSha256(), w.Size, w.Sha256)
			}
			if cur, err = c.startDownload(w); err != nil {
				return err
			}
		}
		if cur == nil {
			return errors.New("the first chunk carries no file info")
		}
		if err := cur.write(chunk); err != nil {
			return err
		}
	}
	if cur != nil {
		if err := cur.finish(); err != nil {
			return err
		}
		got[cur.info.Name] = true
		cur = nil
	}
	for name := range want {
		if !got[name] {
			return fmt.Errorf("%s: not sent", name)
		}
	}
	return nil
}

// download is a file being received into a temporary file of the cache.
type download struct {
	info *dpcnnv1.FileInfo
	dst  string // its place in the cache
	tmp  *os.File
	hash hash.Hash
	n    int64 // bytes received
}

func (c DatasetCache) startDownload(info *dpcnnv1.FileInfo) (*download, error) {
	tmp, err := os.CreateTemp(c.Dir, ".fetch-*")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", info.Name, err)
	}
	return &download{info: info, dst: c.Path(info), tmp: tmp, hash: sha256.New()}, nil
}

func (d *download) write(chunk *dpcnnv1.FileChunk) error {
	if chunk.GetOffset() != d.n {
		return fmt.Errorf("%s: chunk at offset %d, want %d", d.info.Name, chunk.GetOffset(), d.n)
	}
	data := chunk.GetData()
	if int64(len(data)) > d.info.Size-d.n {
		return fmt.Errorf("%s: more than its %d bytes sent", d.info.Name, d.info.Size)
	}
	d.hash.Write(data)
	if _, err := d.tmp.Write(data); err != nil {
		return fmt.Errorf("%s: %w", d.info.Name, err)
	}
	d.n += int64(len(data))
	return nil
}

// finish checks the received file and moves it into place.
func (d *download) finish() error {
	if d.n != d.info.Size {
		return fmt.Errorf("%s: %d bytes received, want %d", d.info.Name, d.n, d.info.Size)
	}
	if sum := hex.EncodeToString(d.hash.Sum(nil)); sum != d.info.Sha256 {
		return fmt.Errorf("%s: sha256 %s, want %s: download refused", d.info.Name, sum, d.info.Sha256)
	}
	if err := d.tmp.Sync(); err != nil {
		return fmt.Errorf("%s: %w", d.info.Name, err)
	}
	if err := d.tmp.Close(); err != nil {
		return fmt.Errorf("%s: %w", d.info.Name, err)
	}
	if err := os.Rename(d.tmp.Name(), d.dst); err != nil {
		os.Remove(d.tmp.Name())
		return fmt.Errorf("%s: %w", d.info.Name, err)
	}
	return nil
}

func (d *download) discard() {
	d.tmp.Close()
	os.Remove(d.tmp.Name())
}

// checkFileInfo checks a FileInfo from the wire: a plain file name, a size
// of at least 0, a sum of 64 lowercase hex digits.
func checkFileInfo(f *dpcnnv1.FileInfo) error {
	name := f.GetName()
	if name == "" || name == "." || name == ".." || len(name) > 200 || strings.ContainsAny(name, `/\`+"\x00") {
		return fmt.Errorf("file name %q: want a plain file name", name)
	}
	if f.GetSize() < 0 {
		return fmt.Errorf("%s: size %d", name, f.GetSize())
	}
	sum := f.GetSha256()
	if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
		return fmt.Errorf("%s: sha256 %q: want 64 lowercase hex digits", name, sum)
	}
	return nil
}

// fileMatches reports whether the file at path has f's size and sum. A
// file that does not match is removed, so that it is fetched again.
func fileMatches(path string, f *dpcnnv1.FileInfo) (bool, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.Size() == f.Size {
		held, err := dataset.DescribeFile(path, f.Name)
		if err != nil {
			return false, err
		}
		if held.SHA256 == f.Sha256 {
			return true, nil
		}
	}
	if err := os.Remove(path); err != nil {
		return false, err
	}
	return false, nil
}

// LoadDatasetFiles reads the MNIST training and test sets from the files
// at paths, keyed by their names ("train-images-idx3-ubyte.gz", or
// without .gz when unpacked), as DatasetCache.Ensure returns them.
func LoadDatasetFiles(paths map[string]string) (train, test *dataset.Set, err error) {
	var found [4]string
	for i, base := range dataset.MNISTFileNames() {
		for _, name := range []string{base + ".gz", base} {
			if p, ok := paths[name]; ok {
				found[i] = p
				break
			}
		}
		if found[i] == "" {
			return nil, nil, fmt.Errorf("worker: data set: no file %s.gz (or %s) among the coordinator's files", base, base)
		}
	}
	if train, err = dataset.LoadSet(found[0], found[1]); err != nil {
		return nil, nil, err
	}
	if test, err = dataset.LoadSet(found[2], found[3]); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// wireFiles is the wire's description of files, for a JoinRequest.
func wireFiles(files []dataset.File) []*dpcnnv1.FileInfo {
	if len(files) == 0 {
		return nil
	}
	out := make([]*dpcnnv1.FileInfo, len(files))
	for i, f := range files {
		out[i] = &dpcnnv1.FileInfo{Name: f.Name, Size: f.Size, Sha256: f.SHA256}
	}
	return out
}
