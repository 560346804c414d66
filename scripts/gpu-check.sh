#!/usr/bin/env bash
# Checks the CUDA backend on a GPU host in one go, with binaries built
# beforehand on any machine with Go (the GPU host needs no Go toolchain):
#
#   scripts/gpu-check.sh build [DIR]   # with Go: binaries and test binaries into DIR
#   scripts/gpu-check.sh run [DIR]     # on the GPU host: tests, benchmarks, a table
#   scripts/gpu-check.sh [DIR]         # build when Go is here, then run
#
# DIR defaults to bin/gpu-check in the repository (git-ignored: carry it
# along when copying the working tree to the GPU host; "run" needs only
# DIR/tests, DIR/scripts and DIR/SOURCE, not the ~100 MB of DIR/bin), or, for
# the copy of this script in DIR/scripts, to DIR. Everything is built with
# CGO_ENABLED=0, so it runs on any glibc x86-64 Linux.
#
# "run" does, in order:
#   1. prints nvidia-smi and the CUDA libraries the backend finds;
#   2. runs the CUDA tests (conformance suite on host slices and on the
#      Device's tensors, gradients of every network against the reference,
#      the network on the device equal bit for bit to the same network
#      through host slices, dropout masks equal to the CPU's bit for bit,
#      determinism, the NVRTC compile check) with DPCNN_REQUIRE_CUDA=1 and
#      DPCNN_REQUIRE_NVRTC=1, so a skip is a failure;
#   3. benchmarks deep-net training (forward, backward, Adam) on the GPU at
#      per-worker batch 100, 1000 and 10000, both with model.Network's
#      tensors in GPU memory ("cuda": parameters and batch in, losses and
#      gradients out) and through the Backend's host-slice methods ("cuda
#      per-call", every layer's tensors copied in and out), and on the CPU
#      backend (all cores) at 100 and 1000;
#   4. runs the same network in PyTorch (cuDNN, float32, TF32 off) with
#      scripts/bench_torch_gpu.py when a Python with CUDA torch is found
#      ($PYTHON, /opt/torch/.venv/bin/python, python3);
#   5. prints a short table last.
#
# Environment: BENCH_STEPS (timed steps per benchmark, default 10),
# DPCNN_CUDA_SYNC=1 (synchronise after every launch, to name a faulting
# kernel), DPCNN_CUDA_LIBRARY_PATH (directories searched first for libcuda,
# libnvrtc and libcublas), DPCNN_CUDA_DEVICE (device ordinal).
# Exit status: 0 when every test passed, 1 otherwise (benchmarks do not
# change it).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Run from the copy inside DIR (DIR/scripts/gpu-check.sh), DIR is the default.
default_dir=$repo/bin/gpu-check
[ -f "$repo/go.mod" ] || default_dir=$repo
mode=auto
case "${1:-}" in
build | run)
	mode=$1
	shift
	;;
esac
dir=${1:-$default_dir}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
log() { echo "gpu-check: $*" >&2; }

build() {
	log "building into $dir"
	mkdir -p "$dir/bin" "$dir/tests" "$dir/scripts" || return 1
	(
		cd "$repo" &&
			CGO_ENABLED=0 go build -trimpath -o "$dir/bin/" ./cmd/... &&
			CGO_ENABLED=0 go test -c -trimpath -o "$dir/tests/cuda.test" ./kernels/cuda &&
			CGO_ENABLED=0 go test -c -trimpath -o "$dir/tests/backends.test" ./backends
	) || return 1
	cp "$repo/scripts/gpu-check.sh" "$repo/scripts/bench_torch_gpu.py" "$repo/scripts/bench_torch.py" "$dir/scripts/" || return 1
	(cd "$repo" && git rev-parse HEAD 2>/dev/null && git status --short 2>/dev/null | head -50) >"$dir/SOURCE" || true
	log "built: $(cd "$dir" && ls bin tests | tr '\n' ' ')"
}

# images_per_s prints the images/s of the Go benchmark whose name ends in
# $1 (plus the -GOMAXPROCS suffix) in the benchmark output $2.
images_per_s() {
	awk -v re="/$1(-[0-9]+)?\$" '$1 ~ re {for (i = 1; i < NF; i++) if ($(i+1) == "images/s") print $i}' "$2"
}

# find_python prints a Python whose torch sees a CUDA device, or nothing.
find_python() {
	local p
	for p in "${PYTHON:-}" /opt/torch/.venv/bin/python python3; do
		[ -n "$p" ] && command -v "$p" >/dev/null 2>&1 || continue
		if "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
			command -v "$p"
			return
		fi
	done
}

run() {
	local out=$dir/results
	mkdir -p "$out"
	local status=0 steps=${BENCH_STEPS:-10}
	[ -x "$dir/tests/cuda.test" ] || {
		log "no $dir/tests/cuda.test: run 'scripts/gpu-check.sh build' on a machine with Go first"
		return 1
	}
	cat "$dir/SOURCE" 2>/dev/null | head -1 | sed 's/^/gpu-check: built from commit /' >&2

	echo "== nvidia-smi"
	if command -v nvidia-smi >/dev/null; then
		nvidia-smi || true
		nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>/dev/null || true
	else
		echo "(no nvidia-smi on PATH)"
	fi

	echo "== CUDA tests (DPCNN_REQUIRE_CUDA=1 DPCNN_REQUIRE_NVRTC=1)"
	# The test binary prints the device, the libraries loaded and where the
	# kernels came from on its first line about the device.
	(cd "$dir/tests" && DPCNN_REQUIRE_CUDA=1 DPCNN_REQUIRE_NVRTC=1 ./cuda.test -test.v -test.count 1 -test.timeout 10m) >"$out/cuda-tests.txt" 2>&1
	local rc=$?
	grep -E '^(cuda test device|--- (FAIL|SKIP)|FAIL|PASS|ok|panic)' "$out/cuda-tests.txt" | head -60
	grep -E -A8 '^--- FAIL' "$out/cuda-tests.txt" | head -80
	echo "cuda tests: exit $rc, $(grep -c -- '--- PASS' "$out/cuda-tests.txt") passed, $(grep -c -- '--- FAIL' "$out/cuda-tests.txt") failed, $(grep -c -- '--- SKIP' "$out/cuda-tests.txt") skipped (log: $out/cuda-tests.txt)"
	[ $rc -eq 0 ] || status=1
	(cd "$dir/tests" && DPCNN_REQUIRE_CUDA=1 ./backends.test -test.v -test.count 1) >"$out/backends-tests.txt" 2>&1
	rc=$?
	echo "backends tests: exit $rc (log: $out/backends-tests.txt)"
	grep -E 'auto chose|--- FAIL' "$out/backends-tests.txt" | head -10
	[ $rc -eq 0 ] || status=1

	echo "== dpcnn benchmark: deep-net training, $steps steps per size"
	(cd "$dir/tests" && ./cuda.test -test.run '^$' -test.bench 'TrainDeep' -test.benchtime "${steps}x" -test.timeout 20m) 2>&1 | tee "$out/bench-dpcnn.txt"

	local py
	py=$(find_python)
	if [ -n "$py" ]; then
		echo "== PyTorch benchmark ($py)"
		"$py" "$dir/scripts/bench_torch_gpu.py" --batches 100,1000,10000 --steps "$steps" --json-out "$out/bench-torch.json" 2>&1 | tee "$out/bench-torch.txt"
	else
		echo "== PyTorch benchmark skipped: no Python with CUDA torch (\$PYTHON, /opt/torch/.venv/bin/python, python3)"
		rm -f "$out/bench-torch.json"
	fi

	echo
	echo "== deep-net training throughput, images/s (forward + backward + Adam; $steps steps each)"
	echo "GPU: $(cat "$out/gpu.txt" 2>/dev/null || echo unknown)"
	printf '%-8s %16s %14s %22s %14s\n' batch "cuda" "cuda per-call" "pytorch cudnn fp32" "dpcnn cpu"
	local b
	for b in 100 1000 10000; do
		local r g c tch
		r=$(images_per_s "cuda/batch=$b" "$out/bench-dpcnn.txt")
		g=$(images_per_s "cuda-per-call/batch=$b" "$out/bench-dpcnn.txt")
		c=$(images_per_s "cpu/batch=$b" "$out/bench-dpcnn.txt")
		tch=""
		if [ -s "$out/bench-torch.json" ]; then
			tch=$("$py" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(next((format(x["trainImagesPerSec"], ".0f") for x in r["results"] if x["batch"] == int(sys.argv[2])), ""))' "$out/bench-torch.json" "$b" 2>/dev/null)
		fi
		printf '%-8s %16s %14s %22s %14s\n' "$b" "${r:--}" "${g:--}" "${tch:--}" "${c:--}"
	done
	echo "tests: $([ $status -eq 0 ] && echo all passed || echo FAILED, see above)"
	return $status
}

case $mode in
build) build ;;
run) run ;;
auto)
	if command -v go >/dev/null; then
		build || exit 1
	fi
	run
	;;
esac
