#!/usr/bin/env bash
# Builds a Kubernetes control plane and node from source, for
# scripts/k8s-check.sh (a real API server for the manifests in deploy/k8s)
# and for running a real single-node cluster:
#
#   scripts/k8s-tools.sh            # builds what is missing, prints the bin folder
#   scripts/k8s-tools.sh apiserver  # only kube-apiserver, kubectl and etcd
#
# Into $CACHE/bin (CACHE: $DPCNN_K8S_CACHE, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/dpcnn-k8s): kube-apiserver and kubectl
# first (what k8s-check.sh needs, so it can start while the rest builds),
# then etcd, kube-controller-manager, kube-scheduler, kubelet and kube-proxy.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# v0.0.0 and replaces them with ./staging/src/..., which a module that
# requires it does not see. So the throwaway main module made here, in
# $CACHE/mod (never in the repository), requires k8s.io/kubernetes at
# $K8S_VERSION and replaces each of those staging modules with its
# published release (v0.X.Y for v1.X.Y), the list read from
# k8s.io/kubernetes's own go.mod. Everything comes from the Go module proxy
# (GOPROXY as configured); the Go build cache is the ordinary one, so a
# second run (or the etcd build from the repository) shares it.
#
# Idempotent: a binary is rebuilt only when it is missing or was not built
# at $K8S_VERSION (read back with `go version -m`). Cold on 2 cores this
# takes a long time (about 15+ minutes for the first two binaries, more for
# all seven) and a few GB of module and build caches.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
# The staging modules are published as v0.MINOR.PATCH for v1.MINOR.PATCH.
STAGING_VERSION=v0.${K8S_VERSION#v1.}
CACHE=${DPCNN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpcnn-k8s}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-all}

log() { echo "k8s-tools: $(date +%H:%M:%S) $*" >&2; }

mod=$CACHE/mod
bin=$CACHE/bin
mkdir -p "$mod" "$bin"

# Static binaries that run anywhere (and need no C toolchain).
export CGO_ENABLED=0

# The version the binaries report (kubectl version, /version, and the
# version skew checks between kubectl, apiserver and kubelet): without
# these the build says v0.0.0-master+$Format:%H$.
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 \
-X k8s.io/client-go/pkg/version.gitMinor=$minor"

# built NAME: true when $bin/NAME exists, was built from k8s.io/kubernetes
# $K8S_VERSION (its build info) and reports $K8S_VERSION (the -X above;
# with -trimpath the build info does not record -ldflags), so that a
# change of K8S_VERSION rebuilds it.
built() {
	[[ -x $bin/$1 ]] || return 1
	go version -m "$bin/$1" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*k8s.io/kubernetes[[:space:]]*$K8S_VERSION[[:space:]]" || return 1
	local v
	if [[ $1 == kubectl ]]; then
		v=$("$bin/kubectl" version --client 2>/dev/null) || return 1
		[[ $v == *"Client Version: $K8S_VERSION"* ]]
	else
		v=$("$bin/$1" --version 2>/dev/null) || return 1
		[[ $v == "Kubernetes $K8S_VERSION" ]]
	fi
}

# --- the throwaway module ------------------------------------------------
# k8s.io/kubernetes's go.mod, from the module cache (downloaded through the
# proxy by `go mod download`, so no host is named here).
upstream_mod() {
	(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION") |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p'
}

make_module() {
	if [[ -f $mod/go.mod && -f $mod/.version && $(cat "$mod/.version") == "$K8S_VERSION" ]]; then
		return
	fi
	log "writing the throwaway module in $mod"
	rm -f "$mod/go.mod" "$mod/go.sum"
	# A go.mod without requirements, so `go mod download` works in it.
	printf 'module dpcnn.local/k8s-tools\n\ngo 1.26\n' >"$mod/go.mod"
	local gomod
	gomod=$(upstream_mod)
	[[ -f $gomod ]] || { log "no go.mod for k8s.io/kubernetes@$K8S_VERSION"; exit 1; }

	# k8s.io/kubernetes may need a newer Go than this machine's: then let
	# the go command fetch that toolchain (from the proxy), for this
	# script only.
	local need have
	need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
	have=$(go env GOVERSION)
	have=${have#go}
	if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -1) != "$have" ]]; then
		log "k8s.io/kubernetes wants go $need, this is go $have: GOTOOLCHAIN=go1.27.3"
		export GOTOOLCHAIN=go1.27.3
	fi

	# Every staging module: each `k8s.io/X v0.0.0` requirement and each
	# `k8s.io/X => ./staging/...` replacement (the second list has one or
	# two the first lacks, e.g. sample-cli-plugin; replacing those too is
	# harmless).
	local staging
	staging=$( {
		sed -n 's/^[[:space:]]*\(k8s\.io\/[^[:space:]]*\) v0\.0\.0\([[:space:]].*\)\{0,1\}$/\1/p' "$gomod"
		sed -n 's/^[[:space:]]*\(k8s\.io\/[^[:space:]]*\) => \.\/staging\/.*$/\1/p' "$gomod"
	} | sort -u)
	log "$(wc -w <<<"$staging") staging modules, replaced with $STAGING_VERSION"

	{
		printf 'module dpcnn.local/k8s-tools\n\ngo %s\n\n' "$need"
		printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		local m
		for m in $staging; do
			printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"
		done
		printf ')\n'
	} >"$mod/go.mod"

	# Imports keep the commands' dependencies in go.mod/go.sum; the build
	# tag keeps the file out of any ordinary build.
	cat >"$mod/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
	log "go mod tidy (downloads the dependencies)"
	(cd "$mod" && go mod tidy -e 2>&1 | tail -20 >&2) || true
	echo "$K8S_VERSION" >"$mod/.version"
}

# build NAME...: go build of k8s.io/kubernetes/cmd/NAME for each NAME not
# yet built, in one go command (so the packages they share compile once).
build() {
	local todo=() n
	for n in "$@"; do
		if built "$n"; then
			log "$n: already built at $K8S_VERSION"
		else
			todo+=("k8s.io/kubernetes/cmd/$n")
		fi
	done
	((${#todo[@]})) || return 0
	log "building ${todo[*]##*/}"
	local t0=$SECONDS
	(cd "$mod" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$bin/" "${todo[@]}")
	log "built ${todo[*]##*/} in $((SECONDS - t0))s"
}

# etcd: the upstream server at the version the repository's go.mod pins (a
# tool dependency there, as deploy/docker/build.sh builds it), so it shares
# that module cache; rebuilt when go.mod names another version.
build_etcd() {
	local want
	want=$(cd "$repo" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
	if [[ -x $bin/etcd ]] && go version -m "$bin/etcd" 2>/dev/null | grep -q "go.etcd.io/etcd/server/v3[[:space:]]*$want"; then
		log "etcd: already built at $want"
		return
	fi
	log "building etcd $want"
	(cd "$repo" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
	log "built etcd"
}

t0=$SECONDS
make_module
build kube-apiserver kubectl
build_etcd
if [[ $what != apiserver ]]; then
	build kube-controller-manager kube-scheduler kubelet kube-proxy
fi
log "done in $((SECONDS - t0))s; binaries in $bin"
ls -l "$bin" >&2
echo "$bin"
