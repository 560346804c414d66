#!/usr/bin/env bash
# genproto.sh regenerates the Go code of the gRPC contract: every
# proto/dpcnn/v1/*.proto becomes proto/dpcnnv1/<name>.pb.go (messages) and,
# when it declares a service, <name>_grpc.pb.go (client and server stubs).
#
# Usage: scripts/genproto.sh [OUT_ROOT]
#   OUT_ROOT is the folder standing for the repository root; the files land
#   under OUT_ROOT/proto/dpcnnv1. Default: the repository root itself.
#   TestGeneratedCodeIsCurrent passes a temporary folder and compares.
#
# Needs protoc (Debian: apt-get install protobuf-compiler) and the go command.
# The plugins are the versions go.mod pins as tool dependencies
# (protoc-gen-go, protoc-gen-go-grpc), built by `go tool`, so every machine
# generates the same code. Running it twice changes nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! command -v protoc >/dev/null 2>&1; then
	echo "genproto: protoc not found; install it (Debian: apt-get install protobuf-compiler)" >&2
	exit 1
fi

cd "$root"
# `go tool -n` builds the pinned plugin into the build cache and prints its
# path instead of running it.
gen_go=$(go tool -n protoc-gen-go)
gen_go_grpc=$(go tool -n protoc-gen-go-grpc)

dst="$out/proto/dpcnnv1"
mkdir -p "$dst"
# Remove the previous output first, so a deleted .proto leaves no stale Go
# file behind. Hand-written files in the package do not end in .pb.go.
rm -f "$dst"/*.pb.go

cd "$root/proto"
protoc \
	--plugin=protoc-gen-go="$gen_go" \
	--plugin=protoc-gen-go-grpc="$gen_go_grpc" \
	--go_out="$out" --go_opt=module=github.com/dpcnn/dpcnn \
	--go-grpc_out="$out" --go-grpc_opt=module=github.com/dpcnn/dpcnn \
	-I . \
	dpcnn/v1/*.proto
