#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, every part built
# from source (the Go module proxy, gcc for the pause program), running
# dpcnn's dev overlay end to end, then torn down:
#
#   scripts/k8s-node.sh            # build, up, test, down (the whole run)
#   scripts/k8s-node.sh build      # binaries and images only
#   scripts/k8s-node.sh up         # start the cluster and apply dpcnn (stays up)
#   scripts/k8s-node.sh test       # the scenario, on a cluster that is up
#   scripts/k8s-node.sh down       # tear everything down
#   scripts/k8s-node.sh kubectl …  # kubectl against the running cluster
#
# Parts: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kube-proxy (iptables mode) from scripts/k8s-tools.sh (its cache,
# DPCNN_K8S_CACHE); a containerd of its own (the host's /usr/bin/containerd
# with its CRI plugin, its own config, root, state and socket: Docker's
# containerd is left alone); the CNI plugins bridge, host-local, loopback
# and portmap from github.com/containernetworking/plugins; CoreDNS from
# github.com/coredns/coredns with only the plugins the cluster needs; the
# pause image from scripts/k8s-node/pause (C, static, FROM scratch); crictl
# from sigs.k8s.io/cri-tools (for the teardown). No image is pulled: each
# is built here (dpcnn:dev by deploy/docker/build.sh) and imported into the
# containerd with `ctr images import`.
#
# The scenario (test): kubectl apply -k deploy/k8s/overlays/dev, a second
# coordinator (kubectl scale, the dev overlay has one), the pods Ready; the
# Job of deploy/k8s/jobs/submit (made small by scripts/k8s-node/job) runs
# `cnnctl submit job --wait`; while it trains, `kubectl scale
# deployment/worker --replicas=3` and the job log must show the third
# worker joining; the leading coordinator's pod is deleted and the standby
# must lead the job; the Job must end Complete with the job SUCCEEDED; then
# `kubectl port-forward` to the leader and `cnnctl download` the model.
#
# Settings: DPCNN_K8S_CACHE (scripts/k8s-tools.sh's cache, the Kubernetes
# binaries), DPCNN_K8S_NODE_CACHE (what this script builds, default
# ~/.cache/dpcnn-k8s-node), K8S_NODE_DIR (the run folder, default
# /tmp/dpcnn-k8s-node, removed by down), K8S_NODE_OUT (a folder to keep the
# downloaded model in), K8S_NODE_TIMEOUT (seconds per wait, 600),
# K8S_NODE_SNAPSHOTTER (containerd's, default overlayfs; native where
# overlayfs cannot mount), DPCNN_IMAGE (dpcnn:dev).
#
# Progress goes to stderr, the key outputs (pods, the Job's log, the
# download) to stdout. Needs root, Go, gcc, docker, containerd, runc and
# iptables; takes long (the first build most of all) and is no part of
# the default test suite. Everything it starts listens on 127.0.0.1 or on
# the bridge it makes (dpcnn0, 10.244.0.1/24); `down` (also run on exit
# by the whole run) stops every process, unmounts, removes the network
# namespaces, the bridge, the iptables chains and the cgroups it made, and
# puts back the sysctls the kubelet and kube-proxy change.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$repo/scripts/k8s-node
K8S_CACHE=${DPCNN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpcnn-k8s}
kbin=$K8S_CACHE/bin
# What this script builds (CNI plugins, coredns, crictl, cnnctl).
NODE_CACHE=${DPCNN_K8S_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpcnn-k8s-node}
nbin=$NODE_CACHE/bin
RUN=${K8S_NODE_DIR:-/tmp/dpcnn-k8s-node}

CNI_VERSION=v1.10.0
COREDNS_VERSION=v1.15.0
CRITOOLS_VERSION=v1.37.0
IMAGE=${DPCNN_IMAGE:-dpcnn:dev}
PAUSE_IMAGE=dpcnn.local/pause:3.10
COREDNS_IMAGE=dpcnn.local/coredns:${COREDNS_VERSION#v}

NODE=dpcnn-node
BRIDGE=dpcnn0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SVC_CIDR=10.96.0.0/16
API_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
ETCD_PORT=23790
ETCD_PEER_PORT=23800
TIMEOUT=${K8S_NODE_TIMEOUT:-600}

ns=dpcnn
sock=$RUN/containerd/containerd.sock

# Progress goes to fd 3, a copy of stderr made at the start: a trap (the
# teardown on a signal) may run while a function's stderr is redirected
# to /dev/null (wait_for), and its messages must still be seen.
exec 3>&2
log() { echo "k8s-node: $(date +%H:%M:%S) $*" >&3; }
die() {
	log "FAILED: $*"
	exit 1
}
# out TITLE: a key output, to stdout, under a heading.
out() { printf '\n===== %s =====\n' "$1"; }

k() { "$kbin/kubectl" --kubeconfig "$RUN/pki/admin.kubeconfig" "$@"; }
kn() { k -n "$ns" "$@"; }
ctr_() { ctr -a "$sock" -n k8s.io "$@"; }
crictl_() { "$nbin/crictl" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 20s "$@"; }

# ---------------------------------------------------------------- build --

build_go_tools() {
	mkdir -p "$nbin"
	local tmp
	tmp=$(mktemp -d)
	local p missing=()
	for p in bridge host-local loopback portmap; do
		[[ -x $nbin/cni/$p ]] || missing+=("$p")
	done
	if ((${#missing[@]})); then
		log "building CNI plugins $CNI_VERSION: ${missing[*]}"
		local pkgs=()
		for p in "${missing[@]}"; do
			case $p in
			host-local) pkgs+=("github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_VERSION") ;;
			portmap) pkgs+=("github.com/containernetworking/plugins/plugins/meta/portmap@$CNI_VERSION") ;;
			*) pkgs+=("github.com/containernetworking/plugins/plugins/main/$p@$CNI_VERSION") ;;
			esac
		done
		(cd "$tmp" && CGO_ENABLED=0 GOFLAGS= GOBIN=$nbin/cni go install -trimpath -ldflags='-s -w' "${pkgs[@]}")
	fi
	if [[ ! -x $nbin/crictl ]]; then
		log "building crictl $CRITOOLS_VERSION"
		(cd "$tmp" && CGO_ENABLED=0 GOFLAGS= GOBIN=$nbin go install -trimpath -ldflags='-s -w' "sigs.k8s.io/cri-tools/cmd/crictl@$CRITOOLS_VERSION")
	fi
	if [[ ! -x $nbin/coredns ]]; then
		# Only the plugins the Corefile (scripts/k8s-node/coredns.yaml)
		# uses: the upstream main links every plugin and its cloud SDKs.
		log "building coredns $COREDNS_VERSION (a main with 7 plugins)"
		local m=$NODE_CACHE/coredns-mod
		mkdir -p "$m"
		cat >"$m/main.go" <<'EOF'
// CoreDNS with only the plugins a cluster's DNS needs here.
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
EOF
		if [[ ! -f $m/go.sum ]]; then
			printf 'module dpcnn.local/coredns\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >"$m/go.mod"
			(cd "$m" && GOFLAGS= go mod tidy)
		fi
		(cd "$m" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -ldflags='-s -w' -o "$nbin/coredns" .)
	fi
	# cnnctl for the host (certificates, download through port-forward).
	log "building cnnctl"
	(cd "$repo" && CGO_ENABLED=0 go build -tags nocuda -o "$nbin/cnnctl" ./cmd/cnnctl)
	rm -rf "$tmp"
}

# docker_image TAG DIR: docker build of a FROM-scratch context.
build_images() {
	log "building $IMAGE (deploy/docker/build.sh)"
	IMAGE=$IMAGE "$repo/deploy/docker/build.sh" >&2
	local ctx
	ctx=$(mktemp -d)
	log "building $PAUSE_IMAGE (scripts/k8s-node/pause, gcc -static)"
	cp "$here/pause/Dockerfile" "$ctx/"
	gcc -static -O2 -Wall -o "$ctx/pause" "$here/pause/pause.c"
	strip "$ctx/pause"
	docker build -q -t "$PAUSE_IMAGE" "$ctx" >&2
	rm -rf "$ctx"
	ctx=$(mktemp -d)
	log "building $COREDNS_IMAGE"
	cp "$nbin/coredns" "$ctx/coredns"
	cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY coredns /coredns
USER 65532:65532
ENTRYPOINT ["/coredns"]
EOF
	docker build -q -t "$COREDNS_IMAGE" "$ctx" >&2
	rm -rf "$ctx"
}

check_k8s_bins() {
	local b
	for b in etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
		[[ -x $kbin/$b ]] || die "$kbin/$b missing: run scripts/k8s-tools.sh first"
	done
}

do_build() {
	check_k8s_bins
	build_go_tools
	build_images
}

# ------------------------------------------------------------------ PKI --

# cert NAME CN O [SANS] [EXT]: a key and a certificate signed by the CA.
cert() {
	local name=$1 cn=$2 o=$3 sans=${4:-} usage=${5:-clientAuth}
	local d=$RUN/pki
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" 2>/dev/null
	local subj="/CN=$cn"
	[[ -n $o ]] && subj="/O=$o$subj"
	openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$usage"
		[[ -n $sans ]] && echo "subjectAltName=$sans"
	} >"$d/$name.ext"
	openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 2 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
	rm -f "$d/$name.csr" "$d/$name.ext"
}

# kubeconfig NAME CERT: a kubeconfig for the client certificate CERT.
kubeconfig() {
	cat >"$RUN/pki/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: k8s-node
    cluster:
      server: https://$NODE_IP:6443
      certificate-authority: $RUN/pki/ca.crt
users:
  - name: $1
    user:
      client-certificate: $RUN/pki/$2.crt
      client-key: $RUN/pki/$2.key
contexts:
  - name: k8s-node
    context: {cluster: k8s-node, user: $1}
current-context: k8s-node
EOF
}

make_pki() {
	local d=$RUN/pki
	mkdir -p "$d"
	chmod 0700 "$d"
	log "PKI: CA, apiserver, kubelet, clients, service-account keys (openssl) in $d"
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$d/ca.key" -subj "/CN=dpcnn-k8s-node-ca" -days 2 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$d/ca.crt" 2>/dev/null
	local host_ip
	host_ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' || true)
	local sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$API_SVC_IP,IP:$NODE_IP"
	[[ -n $host_ip ]] && sans+=",IP:$host_ip"
	cert apiserver kube-apiserver "" "$sans" serverAuth
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert kubelet-server "$NODE" "" "DNS:$NODE,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1" serverAuth
	cert kubelet "system:node:$NODE" system:nodes
	cert controller-manager system:kube-controller-manager ""
	cert scheduler system:kube-scheduler ""
	cert kube-proxy system:kube-proxy ""
	cert admin admin system:masters
	openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
	openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
	kubeconfig admin admin
	kubeconfig kubelet kubelet
	kubeconfig controller-manager controller-manager
	kubeconfig scheduler scheduler
	kubeconfig kube-proxy kube-proxy
	chmod 0600 "$d"/*.key
}

# ------------------------------------------------------------ processes --

# start NAME CMD...: run CMD in the background, its log in logs/NAME.log.
start() {
	local name=$1
	shift
	mkdir -p "$RUN/logs" "$RUN/pids"
	setsid "$@" >"$RUN/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/pids/$name"
	log "started $name (pid $!)"
}

running() { [[ -f $RUN/pids/$1 ]] && kill -0 "$(cat "$RUN/pids/$1")" 2>/dev/null; }

# wait_for WHAT SECONDS CMD...: until CMD succeeds.
wait_for() {
	local what=$1 t=$2
	shift 2
	local end=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || die "timed out after ${t}s waiting for $what"
		sleep 2
	done
	log "ready: $what"
}

stop() {
	local name=$1 pid i
	[[ -f $RUN/pids/$name ]] || return 0
	pid=$(cat "$RUN/pids/$name")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 30; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
		log "stopped $name (pid $pid)"
	fi
	rm -f "$RUN/pids/$name"
}

# The host state the kubelet and kube-proxy change, put back by down.
SYSCTLS="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
net.bridge.bridge-nf-call-ip6tables vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

save_host_state() {
	mkdir -p "$RUN/host"
	local s
	for s in $SYSCTLS; do
		sysctl -n "$s" >"$RUN/host/sysctl.$s" 2>/dev/null || true
	done
	for t in iptables ip6tables; do
		"$t-save" 2>/dev/null | sed -n 's/^:\([^ ]*\) .*/\1/p' | sort -u >"$RUN/host/$t.chains" || true
	done
	ls /run/netns 2>/dev/null | sort >"$RUN/host/netns" || true
	# Folders made outside the run folder whatever the flags: containerd
	# 1.6's shim sockets (/run/containerd/s), the kubelet's device-plugin
	# folder (/var/lib/kubelet/device-plugins), the netns mounts' folder.
	local d
	for d in /run/containerd /var/lib/kubelet /run/netns /var/run/netns; do
		[[ -e $d ]] || echo "$d" >>"$RUN/host/made-dirs"
	done
}

# ------------------------------------------------------------------- up --

write_configs() {
	mkdir -p "$RUN"/{etc,cni/net.d,cni/ipam,containerd,kubelet,pv/etcd-0}
	# etcd-0's volume (storage.yaml): etcd runs as 65532 and the kubelet
	# applies no fsGroup to hostPath.
	chown 65532:65532 "$RUN/pv/etcd-0"
	chmod 0700 "$RUN/pv/etcd-0"

	cat >"$RUN/cni/net.d/10-dpcnn.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dpcnn",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$RUN/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

	cat >"$RUN/containerd/config.toml" <<EOF
# containerd for scripts/k8s-node.sh: its own root, state and socket, so
# the host's (Docker's) is left alone.
version = 2
root = "$RUN/containerd/root"
state = "$RUN/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$RUN/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${K8S_NODE_SNAPSHOTTER:-overlayfs}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$nbin/cni"
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1
EOF

	# No host resolver for the pods: names outside the cluster have no
	# server to go to.
	: >"$RUN/etc/resolv.conf"
	cat >"$RUN/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $RUN/pki/kubelet-server.crt
tlsPrivateKeyFile: $RUN/pki/kubelet-server.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $RUN/pki/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
# This machine has cgroup v1 (cgroupfs, no systemd).
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
resolvConf: $RUN/etc/resolv.conf
# Disk and memory thresholds low enough for a shared build machine.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
  nodefs.inodesFree: 2%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
protectKernelDefaults: false
serializeImagePulls: false
maxPods: 30
EOF

	cat >"$RUN/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $RUN/pki/kube-proxy.kubeconfig
hostnameOverride: $NODE
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack settings as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# The bridge the pods attach to, made before the first pod so that the API
# server (and the kubelet) can listen on its address from the start.
make_bridge() {
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
		touch "$RUN/host/bridge-made"
	fi
	ip addr replace "$NODE_IP/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	sysctl -qw net.ipv4.ip_forward=1
	sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
	# Docker sets the FORWARD policy to DROP, and bridged pod-to-pod
	# packets go through FORWARD (br_netfilter): accept what enters or
	# leaves the pods' bridge, in a chain of ours that down removes.
	if ! iptables -S DPCNN-NODE-FWD >/dev/null 2>&1; then
		iptables -N DPCNN-NODE-FWD
		iptables -A DPCNN-NODE-FWD -i "$BRIDGE" -j ACCEPT
		iptables -A DPCNN-NODE-FWD -o "$BRIDGE" -j ACCEPT
		iptables -I FORWARD 1 -j DPCNN-NODE-FWD
	fi
}

start_control_plane() {
	start etcd "$kbin/etcd" --name k8s-node --data-dir "$RUN/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "k8s-node=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
	wait_for "etcd" 60 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

	local p=$RUN/pki
	start kube-apiserver "$kbin/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
		--service-cluster-ip-range "$SVC_CIDR" \
		--client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--kubelet-client-certificate "$p/apiserver-kubelet-client.crt" --kubelet-client-key "$p/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types InternalIP \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--allow-privileged=true --profiling=false --v 1
	wait_for "kube-apiserver" 120 k get --raw /readyz

	start kube-controller-manager "$kbin/kube-controller-manager" \
		--kubeconfig "$p/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$p/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$p/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
		--cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
		--use-service-account-credentials --service-cluster-ip-range "$SVC_CIDR" --v 1
	start kube-scheduler "$kbin/kube-scheduler" \
		--kubeconfig "$p/scheduler.kubeconfig" \
		--authentication-kubeconfig "$p/scheduler.kubeconfig" \
		--authorization-kubeconfig "$p/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false --v 1
}

import_images() {
	local i
	for i in "$IMAGE" "$PAUSE_IMAGE" "$COREDNS_IMAGE"; do
		log "importing $i into containerd (docker save | ctr images import)"
		docker save "$i" | ctr_ images import - >&2
	done
	ctr_ images ls -q >&2
}

start_node() {
	start containerd containerd --config "$RUN/containerd/config.toml"
	wait_for "containerd" 60 ctr_ version
	import_images
	start kubelet "$kbin/kubelet" --config "$RUN/etc/kubelet.yaml" \
		--kubeconfig "$RUN/pki/kubelet.kubeconfig" --root-dir "$RUN/kubelet" \
		--hostname-override "$NODE" --node-ip "$NODE_IP" --v 1
	wait_for "node $NODE registered" 120 k get node "$NODE"
	start kube-proxy "$kbin/kube-proxy" --config "$RUN/etc/kube-proxy.yaml" --v 1
	wait_for "node $NODE Ready" 180 k wait --for=condition=Ready "node/$NODE" --timeout=5s
}

start_dns() {
	log "applying CoreDNS (scripts/k8s-node/coredns.yaml)"
	k apply -f "$here/coredns.yaml" >&2
	wait_for "CoreDNS available" 180 k -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
}

# The Secrets the pods mount: `cnnctl certs --kubernetes` writes them as a
# manifest where cnnctl has that flag; otherwise kubectl create secret,
# as deploy/README.md ("Kubernetes") does.
make_secrets() {
	local c=$RUN/dpcnn-certs
	local hosts=coordinator,coordinator.$ns,coordinator.$ns.svc,coordinator.$ns.svc.cluster.local,etcd-0.etcd,etcd-0.etcd.$ns,etcd-0.etcd.$ns.svc,etcd-0.etcd.$ns.svc.cluster.local
	rm -rf "$c"
	if "$nbin/cnnctl" certs --help 2>&1 | grep -q -- '--kubernetes'; then
		log "Secrets: cnnctl certs --kubernetes $ns --etcd-members 1, kubectl apply -f secrets.yaml"
		"$nbin/cnnctl" certs --out "$c" --kubernetes "$ns" --etcd-members 1 >&2
		k apply -f "$c/secrets.yaml" >&2
		return
	fi
	log "Secrets: cnnctl certs, then kubectl create secret (cnnctl has no --kubernetes flag)"
	"$nbin/cnnctl" certs --out "$c" --hosts "$hosts" >&2
	kn create secret generic dpcnn-etcd-tls \
		--from-file="$c/ca.crt" --from-file="$c/etcd.crt" --from-file="$c/etcd.key" >&2
	kn create secret generic dpcnn-coordinator-tls \
		--from-file="$c/ca.crt" --from-file="$c/coordinator.crt" --from-file="$c/coordinator.key" --from-file="$c/token" >&2
	kn create secret generic dpcnn-worker-tls \
		--from-file="$c/ca.crt" --from-file="$c/worker.crt" --from-file="$c/worker.key" >&2
	kn create secret generic dpcnn-client --from-file="$c/ca.crt" --from-file="$c/token" >&2
}

apply_dpcnn() {
	log "applying storage (scripts/k8s-node/storage.yaml)"
	sed "s|@RUN@|$RUN|g" "$here/storage.yaml" | k apply -f - >&2
	local overlay=$repo/deploy/k8s/overlays/dev
	[[ -d $overlay ]] || overlay=$repo/deploy/k8s
	log "kubectl apply -k ${overlay#"$repo"/}"
	# The pods wait (ContainerCreating) for the Secrets made next.
	k apply -k "$overlay" >&2
	make_secrets
	# The dev overlay runs one coordinator; the failover needs a standby.
	local reps
	reps=$(kn get deployment/coordinator -o jsonpath='{.spec.replicas}')
	if ((reps < 2)); then
		log "kubectl scale deployment/coordinator --replicas=2 (the dev overlay has $reps; the failover needs a standby)"
		kn scale deployment/coordinator --replicas=2 >&2
	fi
	wait_for "etcd-0 Ready" "$TIMEOUT" kn wait --for=condition=Ready pod/etcd-0 --timeout=5s
	wait_for "coordinators available" "$TIMEOUT" kn wait --for=condition=Available deployment/coordinator --timeout=5s
	wait_for "2 coordinators ready" "$TIMEOUT" test_ready_replicas coordinator 2
	wait_for "workers available" "$TIMEOUT" kn wait --for=condition=Available deployment/worker --timeout=5s
	out "kubectl -n $ns get pods -o wide (after apply)"
	kn get pods -o wide
}

test_ready_replicas() {
	local n
	n=$(kn get "deployment/$1" -o jsonpath='{.status.readyReplicas}')
	((${n:-0} >= $2))
}

do_up() {
	check_k8s_bins
	[[ $EUID -eq 0 ]] || die "needs root (kubelet, containerd, iptables, the bridge)"
	[[ -e $RUN/host ]] && die "$RUN exists: a cluster is up or was not torn down (scripts/k8s-node.sh down)"
	mkdir -p "$RUN"
	save_host_state
	make_pki
	write_configs
	make_bridge
	start_control_plane
	start_node
	start_dns
	apply_dpcnn
}

# ----------------------------------------------------------------- test --

# cn ARGS: cnnctl inside the first coordinator pod that runs, which reaches
# every pod IP (a standby's redirect names the leader's).
cn() {
	local pod
	pod=$(kn get pods -l app.kubernetes.io/name=coordinator --field-selector=status.phase=Running \
		-o jsonpath='{.items[0].metadata.name}')
	kn exec "$pod" -- cnnctl "$@" --coordinator coordinator:7070
}

job_state() { cn status train-simple 2>/dev/null | sed -n 's/^state:[[:space:]]*\([A-Za-z_]*\).*/\1/p' | head -1 | tr a-z A-Z; }

# The leader: the running coordinator pod whose log says it leads (the
# coordinator logs msg=leading when it wins the election).
leader_pod() {
	local p
	for p in $(kn get pods -l app.kubernetes.io/name=coordinator --field-selector=status.phase=Running -o name); do
		[[ -z $(kn get "$p" -o jsonpath='{.metadata.deletionTimestamp}') ]] || continue
		# grep -c, not -q: an early exit would fail the pipeline (pipefail).
		if (($(kn logs "$p" 2>/dev/null | grep -cE '(msg=|"msg":")leading' || true) > 0)); then
			echo "${p#pod/}"
			return 0
		fi
	done
	return 1
}

do_test() {
	local start=$SECONDS
	log "running the Job (scripts/k8s-node/job: deploy/k8s/jobs/submit, 4 small epochs)"
	kn delete job train-simple --ignore-not-found >&2
	# No wait for a leader: the Job starts with the cluster, and its
	# `cnnctl submit --wait` asks again while no coordinator leads yet
	# (--leader-wait), as it follows the job through the failover below;
	# the Job must complete with its first pod.
	# Two workers to start with (the dev overlay's), a third added below.
	kn scale deployment/worker --replicas=2 >&2
	wait_for "2 workers" "$TIMEOUT" test_replicas worker 2
	k apply -k "$here/job" >&2
	wait_for "the training job RUNNING" "$TIMEOUT" test_state RUNNING

	log "kubectl scale deployment/worker --replicas=3 while the job runs"
	kn scale deployment/worker --replicas=3 >&2
	wait_for "3 workers ready" "$TIMEOUT" test_ready_replicas worker 3
	local third
	third=$(kn get pods -l app.kubernetes.io/name=worker --sort-by=.metadata.creationTimestamp -o jsonpath='{.items[-1:].metadata.name}')
	wait_for "$third in the job's log" 180 job_log_has "$third"
	out "cnnctl logs train-simple (the new worker $third joins)"
	cn logs train-simple | grep -E "$third|worker" | tail -20 || true

	# The failover, once the job has a checkpoint to resume from.
	wait_for "the job's first checkpoint" "$TIMEOUT" has_checkpoint
	local leader
	leader=$(leader_pod) || die "cannot tell which coordinator leads"
	out "failover: kubectl delete pod $leader (the leader), the job at:"
	cn status train-simple | grep -E '^(state|progress|checkpoint):' || true
	log "deleting the leading coordinator pod $leader"
	kn delete pod "$leader" --wait=false
	wait_for "a new leader" 120 test_new_leader "$leader"
	local now
	now=$(leader_pod || echo '?')
	echo "new leader: $now; the job after the failover:"
	sleep 5
	cn status train-simple | grep -E '^(state|progress|lost work|checkpoint):' || true
	[[ $(job_state) == RUNNING ]] || log "WARNING: the job is no longer RUNNING after the failover (it ended before it, or failed)"

	log "waiting for the Job to complete"
	wait_for "Job train-simple complete or failed" "$TIMEOUT" job_finished
	out "kubectl -n $ns get job,pods -l batch.kubernetes.io/job-name=train-simple"
	kn get job train-simple -o wide
	kn get pods -l batch.kubernetes.io/job-name=train-simple -o wide
	local jp
	for jp in $(kn get pods -l batch.kubernetes.io/job-name=train-simple --sort-by=.metadata.creationTimestamp -o name); do
		out "kubectl -n $ns logs $jp"
		kn logs "$jp"
	done
	[[ $(kn get job train-simple -o jsonpath='{.status.succeeded}') == 1 ]] || die "Job train-simple did not complete: $(kn get job train-simple -o jsonpath='{.status.conditions[*].message}')"
	local failed
	failed=$(kn get job train-simple -o jsonpath='{.status.failed}')
	[[ -z $failed || $failed == 0 ]] || die "Job train-simple needed $failed retries: its cnnctl did not follow the job through the failover"
	out "cnnctl logs train-simple (the whole job: workers, leaders, checkpoints)"
	cn logs train-simple || true
	out "cnnctl status train-simple"
	cn status train-simple
	[[ $(job_state) == SUCCEEDED ]] || die "train-simple is not SUCCEEDED"

	leader=$(leader_pod) || die "cannot tell which coordinator leads"
	log "port-forward to $leader and cnnctl download"
	kn port-forward "pod/$leader" 17070:7070 >"$RUN/logs/port-forward.log" 2>&1 &
	local pf=$!
	sleep 3
	out "cnnctl download train-simple --model (through kubectl port-forward pod/$leader 17070:7070)"
	local c=$RUN/dpcnn-certs rc=0
	"$nbin/cnnctl" download train-simple --model -o "$RUN/train-simple.onnx" --coordinator 127.0.0.1:17070 \
		--tls-ca "$c/ca.crt" --token-file "$c/token" || rc=$?
	kill "$pf" 2>/dev/null || true
	wait "$pf" 2>/dev/null || true
	if ((rc == 0)); then
		ls -l "$RUN/train-simple.onnx"
		sha256sum "$RUN/train-simple.onnx"
		# The run folder goes at the end: K8S_NODE_OUT=DIR keeps the model.
		if [[ -n ${K8S_NODE_OUT:-} ]]; then
			mkdir -p "$K8S_NODE_OUT"
			cp "$RUN/train-simple.onnx" "$K8S_NODE_OUT/"
			log "model copied to $K8S_NODE_OUT/train-simple.onnx"
		fi
	fi
	((rc == 0)) || die "cnnctl download failed"
	out "kubectl -n $ns get pods -o wide (at the end)"
	kn get pods -o wide
	log "scenario passed in $((SECONDS - start))s"
}

job_finished() { [[ -n $(kn get job train-simple -o jsonpath='{.status.conditions[?(@.status=="True")].type}' | grep -wE 'Complete|Failed') ]]; }
test_replicas() { [[ $(kn get pods -l "app.kubernetes.io/name=$1" -o name | wc -l) -eq $2 ]]; }
test_state() { [[ $(job_state) == "$1" ]]; }
job_log_has() { (($(cn logs train-simple 2>/dev/null | grep -c -- "$1" || true) > 0)); }
has_checkpoint() { (($(cn status train-simple 2>/dev/null | grep -c '^checkpoint:' || true) > 0)); }
test_new_leader() {
	local l
	l=$(leader_pod 2>/dev/null) || return 1
	[[ -n $l && $l != "$1" ]]
}

# ----------------------------------------------------------------- down --

do_down() {
	[[ -d $RUN ]] || {
		log "nothing to tear down ($RUN absent)"
		return 0
	}
	log "tearing down"
	set +e
	if running kube-apiserver && running kubelet; then
		k delete ns "$ns" --wait=false >/dev/null 2>&1
		k -n kube-system delete deployment coredns --wait=false >/dev/null 2>&1
		local i
		for ((i = 0; i < 60; i++)); do
			[[ -z $(k get pods -A -o name 2>/dev/null) ]] && break
			sleep 2
		done
	fi
	stop kube-proxy
	# kube-proxy's chains.
	[[ -x $kbin/kube-proxy ]] && "$kbin/kube-proxy" --cleanup --v 0 >/dev/null 2>&1
	stop kubelet
	if [[ -S $sock ]] && [[ -x $nbin/crictl ]]; then
		crictl_ stopp $(crictl_ pods -q 2>/dev/null) >/dev/null 2>&1
		crictl_ rmp -fa >/dev/null 2>&1
	fi
	stop containerd
	# Shims of this containerd (their command line names its socket).
	local pid
	for pid in $(pgrep -f -- "-address $sock" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	stop kube-scheduler
	stop kube-controller-manager
	stop kube-apiserver
	stop etcd
	# Mounts under the run folder (rootfs overlays, shm, secrets), deepest first.
	local m
	for m in $(awk -v r="$RUN" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	# Network namespaces made since up.
	if [[ -f $RUN/host/netns ]]; then
		for m in $(comm -13 "$RUN/host/netns" <(ls /run/netns 2>/dev/null | sort)); do
			ip netns delete "$m" 2>/dev/null || { umount "/run/netns/$m" 2>/dev/null; rm -f "/run/netns/$m"; }
		done
	fi
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
	if [[ -f $RUN/host/made-dirs ]]; then
		while read -r m; do
			# Only what holds no socket or mount of anyone else's.
			[[ -z $(find "$m" \( -type s -o -type f \) 2>/dev/null | grep -v '/device-plugins/kubelet.sock$') ]] &&
				! awk -v r="$m" 'index($2, r "/") == 1 {f=1} END {exit !f}' /proc/self/mounts &&
				rm -rf "$m"
		done <"$RUN/host/made-dirs"
	fi
	cleanup_iptables iptables
	cleanup_iptables ip6tables
	# cgroups the kubelet made (cgroupfs driver: kubepods under each hierarchy).
	local h
	for h in /sys/fs/cgroup/*/; do
		[[ -d $h/kubepods ]] && find "$h/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	if [[ -d $RUN/host ]]; then
		local s f
		for f in "$RUN"/host/sysctl.*; do
			[[ -s $f ]] || continue
			s=${f##*/sysctl.}
			[[ $(sysctl -n "$s" 2>/dev/null) == "$(cat "$f")" ]] || sysctl -qw "$s=$(cat "$f")" 2>/dev/null
		done
	fi
	rm -rf "$RUN"
	set -e
	log "torn down"
}

# cleanup_iptables iptables|ip6tables: delete the chains that were not
# there at up (KUBE-*, CNI-*, DPCNN-NODE-*), and the rules that jump to them.
cleanup_iptables() {
	local t=$1 before=$RUN/host/$1.chains
	[[ -f $before ]] || return 0
	command -v "$t-save" >/dev/null || return 0
	local table chains c
	for table in filter nat mangle raw; do
		chains=$(comm -13 "$before" <("$t-save" -t "$table" 2>/dev/null | sed -n 's/^:\([^ ]*\) .*/\1/p' | sort -u) |
			grep -E '^(KUBE-|CNI-|DPCNN-NODE-)' || true)
		[[ -n $chains ]] || continue
		for c in $chains; do
			"$t-save" -t "$table" | grep -E -- "-j $c( |$)" | sed 's/^-A /-D /' | while read -r rule; do
				eval "$t -t $table $rule" 2>/dev/null
			done
		done
		for c in $chains; do "$t" -t "$table" -F "$c" 2>/dev/null; done
		for c in $chains; do "$t" -t "$table" -X "$c" 2>/dev/null; done
	done
}

# ----------------------------------------------------------------- main --

case ${1:-all} in
build) do_build ;;
up) do_up ;;
test) do_test ;;
down) do_down ;;
kubectl)
	shift
	k "$@"
	;;
all)
	do_build
	trap 'rc=$?; do_down; exit $rc' EXIT
	# Without these, a signal would end the script without the EXIT trap.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	do_up
	do_test
	;;
*)
	echo "usage: $0 [all|build|up|test|down|kubectl ARGS]" >&2
	exit 2
	;;
esac
