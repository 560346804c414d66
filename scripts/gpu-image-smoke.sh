#!/usr/bin/env bash
# Smoke test of the GPU worker image on a machine WITHOUT a GPU (or without
# NVIDIA's container toolkit): builds it with deploy/docker/gpu/build.sh,
# then checks, with real containers, that
#
#   1. worker --backend cuda exits at once, non-zero, saying that the CUDA
#      driver (libcuda.so.1) was not found and where it looked: the
#      dynamically linked binary starts on the image's glibc;
#   2. worker --backend auto falls back to the CPU backend (its log says
#      so), keeps running (retrying an etcd that is not there), and stops
#      cleanly on SIGTERM;
#   3. the image's NVRTC compiles the backend's kernels (the CUDA package's
#      TestKernelsCompileWithNVRTC, built here, run in the image): NVRTC
#      needs no driver, so this much of the CUDA setup is checked too.
#      Skipped when the image has no NVRTC (a base made with CUDA_LIBS=0).
#
#   scripts/gpu-image-smoke.sh                 # builds, then checks dpcnn-gpu:dev
#   NO_BUILD=1 scripts/gpu-image-smoke.sh      # checks the image as it is
#   IMAGE=... REBUILD_BASE=1 ...               # passed on to the build script
#
# Every container it starts is removed on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${IMAGE:-dpcnn-gpu:dev}
export IMAGE=$image
# Nothing listens on port 1 of the container's loopback: the worker's etcd
# dial fails (and is retried) without reaching anything real.
etcd=127.0.0.1:1

work=$(mktemp -d "${TMPDIR:-/tmp}/dpcnn-gpu-smoke.XXXXXX")
containers=()
cleanup() {
	local c
	for c in "${containers[@]}"; do
		docker rm -f "$c" >/dev/null 2>&1 || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "gpu-image-smoke: FAIL: $*" >&2
	exit 1
}

if [[ ${NO_BUILD:-0} != 1 ]]; then
	start=$SECONDS
	"$repo/deploy/docker/gpu/build.sh"
	echo "gpu-image-smoke: build took $((SECONDS - start)) s" >&2
fi
docker image inspect "$image" >/dev/null 2>&1 || fail "no image $image (build it, or unset NO_BUILD)"
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "gpu-image-smoke: $image is $((size / 1000000)) MB" >&2

# 1. --backend cuda: the worker opens its backend before it dials, so the
# missing driver must end it within seconds. timeout guards against a hang.
echo "gpu-image-smoke: 1. worker --backend cuda, no driver" >&2
name=dpcnn-gpu-smoke-cuda-$$
containers+=("$name")
start=$SECONDS
rc=0
timeout 60 docker run --name "$name" "$image" worker --backend cuda --etcd "$etcd" --insecure >"$work/cuda.log" 2>&1 || rc=$?
took=$((SECONDS - start))
sed 's/^/    /' "$work/cuda.log" >&2
((rc != 0)) || fail "worker --backend cuda exited 0 without a driver"
((rc != 124)) || fail "worker --backend cuda still running after 60 s (it should fail at once)"
grep -q 'CUDA driver library not found (looked for libcuda.so.1' "$work/cuda.log" ||
	fail "worker --backend cuda: no message naming the missing driver (libcuda.so.1)"
grep -q '/usr/local/nvidia/lib64/libcuda.so.1: not present' "$work/cuda.log" ||
	fail "worker --backend cuda: the message does not list /usr/local/nvidia/lib64 among the places searched"
echo "gpu-image-smoke: ok: exit $rc after ${took} s, the missing libcuda.so.1 named" >&2

# 2. --backend auto: the CPU fallback is logged at Info when the backend is
# opened; after that the worker only retries etcd, so stop it (SIGTERM, as
# Kubernetes does) once the line is there and check it drains and exits 0.
echo "gpu-image-smoke: 2. worker --backend auto, no driver" >&2
name=dpcnn-gpu-smoke-auto-$$
containers+=("$name")
docker run -d --name "$name" "$image" worker --backend auto --etcd "$etcd" --insecure >/dev/null
found=0
for _ in $(seq 1 60); do
	if docker logs "$name" 2>&1 | grep -q 'backend="cpu: '; then
		found=1
		break
	fi
	[[ $(docker inspect -f '{{.State.Running}}' "$name") == true ]] || break
	sleep 0.5
done
docker stop -t 20 "$name" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
docker logs "$name" >"$work/auto.log" 2>&1
sed 's/^/    /' "$work/auto.log" >&2
((found == 1)) || fail "worker --backend auto: no CPU backend in its log within 30 s"
grep -q 'backend auto: no usable CUDA device, using the CPU backend' "$work/auto.log" ||
	fail "worker --backend auto: no line saying why it fell back to the CPU"
grep -q 'msg=stopped' "$work/auto.log" || fail "worker --backend auto: did not log its stop on SIGTERM"
[[ $code == 0 ]] || fail "worker --backend auto: exit $code on SIGTERM, want 0"
echo "gpu-image-smoke: ok: fell back to the CPU, stopped with exit 0" >&2

# 3. NVRTC in the image, without a GPU: the test binary is built here (the
# image has no Go) and mounted read-only; DPCNN_REQUIRE_NVRTC=1 makes a
# missing NVRTC a failure instead of a skip.
echo "gpu-image-smoke: 3. the image's NVRTC compiles the kernels" >&2
if ! docker run --rm --entrypoint /bin/sh "$image" -c 'ls /usr/lib/x86_64-linux-gnu/libnvrtc.so.* >/dev/null 2>&1'; then
	echo "gpu-image-smoke: skipped: $image has no NVRTC (base made with CUDA_LIBS=0)" >&2
else
	(cd "$repo" && CGO_ENABLED=0 go test -c -o "$work/cuda.test" ./kernels/cuda)
	chmod 0755 "$work" "$work/cuda.test"
	name=dpcnn-gpu-smoke-nvrtc-$$
	containers+=("$name")
	rc=0
	timeout 300 docker run --name "$name" -e DPCNN_REQUIRE_NVRTC=1 -v "$work/cuda.test:/cuda.test:ro" \
		"$image" /cuda.test -test.run 'NVRTC' -test.v >"$work/nvrtc.log" 2>&1 || rc=$?
	sed 's/^/    /' "$work/nvrtc.log" >&2
	((rc == 0)) || fail "NVRTC tests in the image: exit $rc"
	grep -q -- '--- PASS: TestKernelsCompileWithNVRTC' "$work/nvrtc.log" ||
		fail "NVRTC tests in the image: TestKernelsCompileWithNVRTC did not pass"
	echo "gpu-image-smoke: ok: the image's NVRTC compiled the kernels" >&2
fi

echo "gpu-image-smoke: PASS ($image, $((size / 1000000)) MB)" >&2
