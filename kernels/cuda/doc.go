// Package cuda is kernels.Backend[float32] on NVIDIA GPUs, with no cgo and
// no CUDA toolkit needed to build: the CUDA driver API (libcuda.so.1), NVRTC
// (libnvrtc) and cuBLAS (libcublas) are loaded at run time through
// github.com/ebitengine/purego, so one CGO_ENABLED=0 binary runs on CPU-only
// machines (New fails cleanly, IsUnavailable says why) and on GPU hosts.
//
// The kernels are CUDA C in kernels.cu, embedded in the binary and compiled
// on first use by NVRTC for the device's architecture: a CUBIN for sm_XY
// when NVRTC knows it (the driver accepts a CUBIN from a newer NVRTC of the
// same major, unlike PTX), else PTX for the newest older virtual
// architecture, which the driver compiles. Compiled modules are cached on
// disk (os.UserCacheDir()/dpcnn/cuda, or $DPCNN_CUDA_CACHE_DIR), keyed by a
// hash of the source, the options, the NVRTC and driver versions and the
// device name. Convolutions are im2col kernels plus cuBLAS SGEMM; every
// other primitive has its own kernel. Backward passes gather rather than
// scatter (no atomics), so results are deterministic, and kernels that do
// the CPU's arithmetic do it in the CPU's order, so dropout masks, pooling
// and col2im equal the CPU backend's bit for bit.
//
// Libraries are looked for in DPCNN_CUDA_LIBRARY_PATH, LD_LIBRARY_PATH, the
// dynamic loader's own search, the driver directories of distributions and
// containers, $CUDA_PATH and $CUDA_HOME, the nvidia-* pip wheels of
// $VIRTUAL_ENV, $CONDA_PREFIX and /opt/torch/.venv, and /usr/local/cuda*;
// never a toolkit stubs directory. A failed search reports every path tried
// and why it failed (*LoadError).
//
// Backend.Device is the backend's kernels.Device: tensors in GPU memory
// and every primitive of a network's passes on them, so model.Network on
// this backend keeps its activations, parameters and gradients on the GPU
// and a deep-net training step moves about 3.2 KB per image (the image,
// its label and sample index in, its loss and correct flag out) plus the
// parameters in and the gradients out once per step. Through the
// kernels.Backend methods on host slices every call copies its tensors
// instead (about 1.75 MB per image per deep-net step). Device errors are
// latched and returned by Sync, which model.Network checks at the end of
// every pass and returns; the host-slice methods, which have no error
// result, panic with them.
//
// Every call's status is checked; failures are *Error values naming the
// library function and its CUresult, nvrtcResult or cublasStatus_t name.
// Kernel faults surface at the next synchronising call; DPCNN_CUDA_SYNC=1
// (Options.SyncEveryLaunch) synchronises after every launch so the error
// names the kernel that faulted.
package cuda
