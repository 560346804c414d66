package kernels_test

import (
	"slices"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/kernels/kernelstest"
)

// TestOnHostConformance runs the conformance suite on the host Devices of
// the CPU and reference backends, through the tensors' Alloc, Upload and
// Download.
func TestOnHostConformance(t *testing.T) {
	cpu := kernels.NewCPU(2)
	defer cpu.Close()
	t.Run("cpu", func(t *testing.T) { kernelstest.TestDevice(t, cpu, kernels.DeviceOf[float32](cpu)) })
	ref := kernels.NewReference[float32]()
	t.Run("reference", func(t *testing.T) { kernelstest.TestDevice(t, ref, kernels.DeviceOf[float32](ref)) })
}

// TestHostTensors checks tensors of host memory: views share the slice,
// uploads and downloads copy (and skip copying a slice onto itself), the
// zero Tensor is none.
func TestHostTensors(t *testing.T) {
	d := kernels.DeviceOf[float32](kernels.NewReference[float32]())
	if d.Memory() != nil || d.Name() != "reference" || d.Sync() != nil {
		t.Fatalf("reference device: memory %v, name %q", d.Memory(), d.Name())
	}
	x, err := kernels.Alloc[float32](d.Memory(), 6)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != 6 || x.IsZero() || x.Addr() != 0 || !slices.Equal(x.Host(), make([]float32, 6)) {
		t.Fatalf("Alloc(6): len %d, host %v", x.Len(), x.Host())
	}
	kernels.Upload(d.Memory(), x.Slice(2, 5), []float32{1, 2, 3})
	if !slices.Equal(x.Host(), []float32{0, 0, 1, 2, 3, 0}) {
		t.Errorf("after an upload into [2:5]: %v", x.Host())
	}
	got := make([]float32, 2)
	kernels.Download(d.Memory(), got, x.Slice(3, 6))
	if !slices.Equal(got, []float32{2, 3}) {
		t.Errorf("download of [3:5]: %v", got)
	}
	s := []float32{4, 5}
	h := kernels.HostTensor(s)
	kernels.Upload(nil, h, s)
	kernels.Download(nil, s, h)
	h.Host()[0] = 7
	if s[0] != 7 || h.Len() != 2 {
		t.Errorf("a host tensor is not its slice: %v", s)
	}
	var none kernels.Tensor[int32]
	if !none.IsZero() || none.Len() != 0 || kernels.HostTensor[int64](nil).Len() != 0 {
		t.Error("the zero Tensor is not empty")
	}
	if err := kernels.Free(d.Memory(), x); err != nil {
		t.Error(err)
	}
	for _, bad := range []func(){
		func() { x.Slice(4, 7) },
		func() { x.Slice(3, 2) },
		func() { kernels.Upload(nil, x, make([]float32, 7)) },
		func() { kernels.Download(nil, make([]float32, 7), x) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("an out-of-range tensor access did not panic")
				}
			}()
			bad()
		}()
	}
}
