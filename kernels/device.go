package kernels

import (
	"fmt"
	"unsafe"
)

// Elem is the element type of a Tensor: the Floats, int32 (labels and
// max-pooling arg-maxes) and int64 (dataset indices, which key dropout
// masks).
type Elem interface {
	~float32 | ~float64 | ~int32 | ~int64
}

// DevPtr is an address in a device's own memory.
type DevPtr uint64

// Tensor is a handle to elements held by a Device: a slice of host memory
// on a device that computes in host memory (the CPU and reference backends
// through OnHost), an address in device memory on one that does not (CUDA).
// It is a small value: copying it copies the handle, not the elements, and
// Slice makes views of the same memory. The zero Tensor stands for "none"
// where an operation takes an optional tensor.
//
// Tensors of device memory come from Alloc and go back with Free; host
// memory is the garbage collector's.
type Tensor[E Elem] struct {
	host []E
	addr DevPtr
	n    int
}

// HostTensor is a tensor of host memory: s itself, not a copy.
func HostTensor[E Elem](s []E) Tensor[E] { return Tensor[E]{host: s, n: len(s)} }

// Len is the number of elements.
func (t Tensor[E]) Len() int { return t.n }

// IsZero reports the zero Tensor, which holds no memory at all.
func (t Tensor[E]) IsZero() bool { return t.host == nil && t.addr == 0 }

// Host is the tensor's host memory, nil for a tensor of device memory.
func (t Tensor[E]) Host() []E { return t.host }

// Addr is the device address of the tensor's first element, 0 for a tensor
// of host memory.
func (t Tensor[E]) Addr() DevPtr { return t.addr }

// Slice is the view of elements [from, to).
func (t Tensor[E]) Slice(from, to int) Tensor[E] {
	if from < 0 || to < from || to > t.n {
		panic(fmt.Sprintf("kernels: tensor slice [%d:%d] of %d elements", from, to, t.n))
	}
	if t.host != nil {
		return Tensor[E]{host: t.host[from:to], n: to - from}
	}
	var zero E
	return Tensor[E]{addr: t.addr + DevPtr(uintptr(from)*unsafe.Sizeof(zero)), n: to - from}
}

// Memory is the memory of a device that does not compute in host memory.
// Copies run in order with the operations issued before them (a copy out
// waits for them), and like operations they report failure through
// Device.Sync rather than by returning it: after a failure, copies and
// operations do nothing until Sync has returned the error.
type Memory interface {
	// Alloc returns bytes of device memory, not initialised.
	Alloc(bytes uintptr) (DevPtr, error)
	// Free releases memory from Alloc.
	Free(p DevPtr) error
	// CopyIn copies bytes from host memory at src to the device.
	CopyIn(dst DevPtr, src unsafe.Pointer, bytes uintptr)
	// CopyOut copies bytes from the device to host memory at dst.
	CopyOut(dst unsafe.Pointer, src DevPtr, bytes uintptr)
}

// Alloc returns a tensor of n elements in m, or in host memory (zeroed)
// when m is nil: what Device.Memory returns for a device that computes in
// host memory.
func Alloc[E Elem](m Memory, n int) (Tensor[E], error) {
	if n < 0 {
		return Tensor[E]{}, fmt.Errorf("kernels: allocate %d elements", n)
	}
	if m == nil {
		return HostTensor(make([]E, n)), nil
	}
	var zero E
	p, err := m.Alloc(uintptr(max(n, 1)) * unsafe.Sizeof(zero))
	if err != nil {
		return Tensor[E]{}, err
	}
	return Tensor[E]{addr: p, n: n}, nil
}

// Free releases a tensor that Alloc returned (not a view of one) from m;
// with m nil it does nothing.
func Free[E Elem](m Memory, t Tensor[E]) error {
	if m == nil || t.addr == 0 {
		return nil
	}
	return m.Free(t.addr)
}

// Upload copies src into the first len(src) elements of dst. On host
// memory (m nil) it copies nothing when dst already holds src.
func Upload[E Elem](m Memory, dst Tensor[E], src []E) {
	if len(src) > dst.n {
		panic(fmt.Sprintf("kernels: upload of %d elements into a tensor of %d", len(src), dst.n))
	}
	if len(src) == 0 {
		return
	}
	if m == nil {
		if &dst.host[0] != &src[0] {
			copy(dst.host, src)
		}
		return
	}
	var zero E
	m.CopyIn(dst.addr, unsafe.Pointer(unsafe.SliceData(src)), uintptr(len(src))*unsafe.Sizeof(zero))
}

// Download copies the first len(dst) elements of src into dst. On host
// memory (m nil) it copies nothing when src already is dst.
func Download[E Elem](m Memory, dst []E, src Tensor[E]) {
	if len(dst) > src.n {
		panic(fmt.Sprintf("kernels: download of %d elements from a tensor of %d", len(dst), src.n))
	}
	if len(dst) == 0 {
		return
	}
	if m == nil {
		if &dst[0] != &src.host[0] {
			copy(dst, src.host)
		}
		return
	}
	var zero E
	m.CopyOut(unsafe.Pointer(unsafe.SliceData(dst)), src.addr, uintptr(len(dst))*unsafe.Sizeof(zero))
}

// Device computes the primitives of a network's forward and backward
// passes on tensors it holds, so that a network whose tensors all live on
// it moves only its inputs and results between host and device memory. It
// has the methods of Backend that a network's layers use, with the same
// meaning, layout and conventions, on Tensors instead of slices; tensors
// must be at least as long as the geometry implies. An optional input or
// output that Backend takes as a nil slice is the zero Tensor here.
//
// Operations return no error. A device that can fail (CUDA) latches the
// first failure of an operation, copy or launch, skips the work issued
// after it, and returns it from Sync; results read before a Sync that
// returns an error are not to be trusted. OnHost devices never fail
// (an argument that breaks the contract panics, as with Backend).
//
// DeviceOf gives a Backend's Device. Like a Backend, a Device is not safe
// for concurrent use.
type Device[T Float] interface {
	// Name is the name of the backend the device belongs to.
	Name() string
	// Memory is the device memory the tensors live in, or nil when they
	// are host memory: Alloc, Free, Upload and Download take it.
	Memory() Memory
	// Sync waits for the work issued so far and returns the first error
	// since the previous Sync, clearing it (a device that broke for good
	// keeps returning one).
	Sync() error

	ConvForward(g ConvGeom, x, w, bias, y Tensor[T])
	ConvForwardReLU(g ConvGeom, x, w, bias, y Tensor[T])
	ConvBackwardData(g ConvGeom, dy, w, dx Tensor[T])
	ConvBackwardFilter(g ConvGeom, x, dy, dw, dbias Tensor[T])

	MaxPoolForward(g PoolGeom, x, y Tensor[T], argmax Tensor[int32])
	MaxPoolBackward(g PoolGeom, dy Tensor[T], argmax Tensor[int32], dx Tensor[T])
	AvgPoolForward(g PoolGeom, x, y Tensor[T])
	AvgPoolBackward(g PoolGeom, dy, dx Tensor[T])

	// The elementwise operations work on the Len of the tensor that
	// carries the data: x forward, dy backward (see Backend).
	ReLUForward(x, y Tensor[T])
	ReLUBackward(y, dy, dx Tensor[T])
	SigmoidForward(x, y Tensor[T])
	SigmoidBackward(y, dy, dx Tensor[T])

	AffineForward(n, in, out int, x, w, bias, y Tensor[T])
	AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias Tensor[T])

	// SoftmaxCrossEntropy returns the summed loss and correct count in
	// host memory (the per-row results are added in row order there);
	// probs and dlogits stay on the device. Labels must be in
	// [0, classes): the caller checks them before they are uploaded.
	SoftmaxCrossEntropy(n, classes int, logits Tensor[T], labels Tensor[int32], scale T, probs, dlogits Tensor[T]) (lossSum float64, correct int)

	DropoutForward(d DropoutParams, rows, cols int, samples Tensor[int64], x, y, mask Tensor[T])
	DropoutBackward(mask, dy, dx Tensor[T])

	LRNForward(p LRNParams, x, y, scale Tensor[T])
	LRNBackward(p LRNParams, x, y, scale, dy, dx Tensor[T])

	// The batch normalisation methods take the zero Tensor for meanStat
	// and varStat, and for dx, where Backend takes nil.
	BatchNormForwardTrain(p BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat Tensor[T])
	BatchNormForwardInfer(p BatchNormParams, x, gamma, beta, runMean, runVar, y Tensor[T])
	BatchNormBackward(p BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta Tensor[T])
}

// DeviceOf is b's Device: its own when it computes in memory of its own
// (a backend with a method Device() Device[T], such as CUDA's), else
// OnHost(b).
func DeviceOf[T Float](b Backend[T]) Device[T] {
	if own, ok := b.(interface{ Device() Device[T] }); ok {
		return own.Device()
	}
	return OnHost(b)
}

// OnHost is b as a Device whose tensors are host memory: every operation
// is the Backend method of the same name on the tensors' slices, so a
// network computes on it exactly what it computes through the Backend,
// with no copies. It is how the CPU and reference backends hold tensors;
// on a backend with a device of its own it runs each operation through the
// Backend's host interface, copying its tensors in and out.
func OnHost[T Float](b Backend[T]) Device[T] { return hostDevice[T]{b} }

// hostDevice is OnHost's Device.
type hostDevice[T Float] struct{ b Backend[T] }

func (h hostDevice[T]) Name() string { return h.b.Name() }
func (hostDevice[T]) Memory() Memory { return nil }
func (hostDevice[T]) Sync() error    { return nil }

func (h hostDevice[T]) ConvForward(g ConvGeom, x, w, bias, y Tensor[T]) {
	h.b.ConvForward(g, x.host, w.host, bias.host, y.host)
}

func (h hostDevice[T]) ConvForwardReLU(g ConvGeom, x, w, bias, y Tensor[T]) {
	h.b.ConvForwardReLU(g, x.host, w.host, bias.host, y.host)
}

func (h hostDevice[T]) ConvBackwardData(g ConvGeom, dy, w, dx Tensor[T]) {
	h.b.ConvBackwardData(g, dy.host, w.host, dx.host)
}

func (h hostDevice[T]) ConvBackwardFilter(g ConvGeom, x, dy, dw, dbias Tensor[T]) {
	h.b.ConvBackwardFilter(g, x.host, dy.host, dw.host, dbias.host)
}

func (h hostDevice[T]) MaxPoolForward(g PoolGeom, x, y Tensor[T], argmax Tensor[int32]) {
	h.b.MaxPoolForward(g, x.host, y.host, argmax.host)
}

func (h hostDevice[T]) MaxPoolBackward(g PoolGeom, dy Tensor[T], argmax Tensor[int32], dx Tensor[T]) {
	h.b.MaxPoolBackward(g, dy.host, argmax.host, dx.host)
}

func (h hostDevice[T]) AvgPoolForward(g PoolGeom, x, y Tensor[T]) {
	h.b.AvgPoolForward(g, x.host, y.host)
}

func (h hostDevice[T]) AvgPoolBackward(g PoolGeom, dy, dx Tensor[T]) {
	h.b.AvgPoolBackward(g, dy.host, dx.host)
}

func (h hostDevice[T]) ReLUForward(x, y Tensor[T])       { h.b.ReLUForward(x.host, y.host) }
func (h hostDevice[T]) ReLUBackward(y, dy, dx Tensor[T]) { h.b.ReLUBackward(y.host, dy.host, dx.host) }
func (h hostDevice[T]) SigmoidForward(x, y Tensor[T])    { h.b.SigmoidForward(x.host, y.host) }

func (h hostDevice[T]) SigmoidBackward(y, dy, dx Tensor[T]) {
	h.b.SigmoidBackward(y.host, dy.host, dx.host)
}

func (h hostDevice[T]) AffineForward(n, in, out int, x, w, bias, y Tensor[T]) {
	h.b.AffineForward(n, in, out, x.host, w.host, bias.host, y.host)
}

func (h hostDevice[T]) AffineBackward(n, in, out int, x, w, dy, dx, dw, dbias Tensor[T]) {
	h.b.AffineBackward(n, in, out, x.host, w.host, dy.host, dx.host, dw.host, dbias.host)
}

func (h hostDevice[T]) SoftmaxCrossEntropy(n, classes int, logits Tensor[T], labels Tensor[int32], scale T, probs, dlogits Tensor[T]) (float64, int) {
	return h.b.SoftmaxCrossEntropy(n, classes, logits.host, labels.host, scale, probs.host, dlogits.host)
}

func (h hostDevice[T]) DropoutForward(d DropoutParams, rows, cols int, samples Tensor[int64], x, y, mask Tensor[T]) {
	h.b.DropoutForward(d, rows, cols, samples.host, x.host, y.host, mask.host)
}

func (h hostDevice[T]) DropoutBackward(mask, dy, dx Tensor[T]) {
	h.b.DropoutBackward(mask.host, dy.host, dx.host)
}

func (h hostDevice[T]) LRNForward(p LRNParams, x, y, scale Tensor[T]) {
	h.b.LRNForward(p, x.host, y.host, scale.host)
}

func (h hostDevice[T]) LRNBackward(p LRNParams, x, y, scale, dy, dx Tensor[T]) {
	h.b.LRNBackward(p, x.host, y.host, scale.host, dy.host, dx.host)
}

func (h hostDevice[T]) BatchNormForwardTrain(p BatchNormParams, x, gamma, beta, y, mean, invStd, meanStat, varStat Tensor[T]) {
	h.b.BatchNormForwardTrain(p, x.host, gamma.host, beta.host, y.host, mean.host, invStd.host, meanStat.host, varStat.host)
}

func (h hostDevice[T]) BatchNormForwardInfer(p BatchNormParams, x, gamma, beta, runMean, runVar, y Tensor[T]) {
	h.b.BatchNormForwardInfer(p, x.host, gamma.host, beta.host, runMean.host, runVar.host, y.host)
}

func (h hostDevice[T]) BatchNormBackward(p BatchNormParams, x, gamma, mean, invStd, dy, dx, dgamma, dbeta Tensor[T]) {
	h.b.BatchNormBackward(p, x.host, gamma.host, mean.host, invStd.host, dy.host, dx.host, dgamma.host, dbeta.host)
}
