#!/usr/bin/env bash
# Applies the Kubernetes manifests in deploy/k8s to a real API server, so
# that what only the server checks (schemas of every field, strict field
# validation, defaulting, validation of names, selectors, ports,
# resources, immutable fields, admission) is checked too, not only that
# the YAML decodes:
#
#   scripts/k8s-check.sh                  # every kustomization under deploy/k8s
#   scripts/k8s-check.sh overlays/dev     # only these (relative to deploy/k8s)
#
# It starts etcd and kube-apiserver (built by scripts/k8s-tools.sh, which
# it runs when they are missing) on 127.0.0.1 at free ports, in a temporary
# folder, and stops them and removes the folder on exit, whatever happens.
# There is no controller-manager, scheduler or kubelet: objects are stored,
# validated and admitted, but nothing runs (no pods, no endpoints).
#
# What is checked, for each kustomization folder:
#   - overlays/*, base, and any other folder that is not a Component:
#     applied on its own, each on a fresh API server storage (the overlays
#     share names, and without a controller-manager a namespace cannot
#     finish deleting, so "delete the previous one" is not possible);
#   - jobs/ and its subfolders (anything that is not an overlay or the
#     base): applied on top of the dev overlay (K8S_CHECK_ON to choose
#     another), which is what they need (namespace, Services, ConfigMap);
#   - Components (kind: Component) cannot be applied alone: they are
#     checked through the overlays that use them.
# For each: kustomize renders it; its Namespaces are created; then
#   1. kubectl apply --server-side --dry-run=server   (server-side apply, dry run)
#   2. kubectl apply --validate=strict --dry-run=server (client-side apply,
#      strict field validation by the server: unknown or duplicate fields fail)
#   3. kubectl apply --server-side --validate=strict   (for real)
#   4. kubectl get of every rendered object (all must exist)
# and the case passes when all four do. Any rejected object fails the run
# (exit status 1) with the server's message. So does a PodSecurity
# "would violate" warning (the namespace enforces a level: the pods made
# from that template would be refused; K8S_CHECK_PSA=warn to only list
# them); other warnings (deprecations) are printed and listed only.
#
# Output (the commands' output, PASS/FAIL per case, a summary) goes to
# stdout; progress to stderr. Needs bash, openssl, python3 (free ports),
# curl, and what scripts/k8s-tools.sh needs to build (Go, the module proxy).
#
# Environment: DPCNN_K8S_CACHE (as for k8s-tools.sh), K8S_CHECK_ON (the
# overlay the jobs go on, default dev), K8S_CHECK_PSA=warn (PodSecurity
# warnings do not fail), K8S_CHECK_ROOT (a folder to check
# instead of deploy/k8s), K8S_CHECK_KEEP=1 (keep the
# temporary folder, with the servers' logs).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# K8S_CHECK_ROOT: another folder laid out like deploy/k8s (for checking
# this script itself against a broken copy).
k8s=$(cd "${K8S_CHECK_ROOT:-$repo/deploy/k8s}" && pwd)
shown=${k8s#"$repo"/} # how the output names it
CACHE=${DPCNN_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dpcnn-k8s}
bin=$CACHE/bin
on=${K8S_CHECK_ON:-dev}

log() { echo "k8s-check: $(date +%H:%M:%S) $*" >&2; }

# --- binaries --------------------------------------------------------------
# Built once by k8s-tools.sh (idempotent: it only builds what is missing);
# only kube-apiserver, kubectl and etcd are needed here.
if [[ ! -x $bin/kube-apiserver || ! -x $bin/kubectl || ! -x $bin/etcd ]]; then
	log "building kube-apiserver, kubectl and etcd with scripts/k8s-tools.sh (a long time the first time)"
	"$repo/scripts/k8s-tools.sh" apiserver >/dev/null
fi
kubectl_bin=$bin/kubectl

# --- temporary folder and teardown ----------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/k8s-check.XXXXXX")
etcd_pid=
api_pid=

# stop PID: TERM, then KILL after 10 s; waits so that nothing is left.
stop() {
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

teardown() {
	local rc=$?
	trap - EXIT INT TERM
	stop "$api_pid"
	stop "$etcd_pid"
	if [[ ${K8S_CHECK_KEEP:-} == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port: a TCP port on 127.0.0.1 free now (the kernel picks it; it is
# released at once, so a race with another process is possible but rare).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

etcd_port=$(free_port)
etcd_peer_port=$(free_port)
api_port=$(free_port)
while [[ $etcd_peer_port == "$etcd_port" ]]; do etcd_peer_port=$(free_port); done
while [[ $api_port == "$etcd_port" || $api_port == "$etcd_peer_port" ]]; do api_port=$(free_port); done

# --- credentials ------------------------------------------------------------
# The serving certificate: self-signed for 127.0.0.1, which kubectl then
# trusts as its own CA (no --insecure-skip-tls-verify).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=k8s-check \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-keyout "$tmp/serving.key" -out "$tmp/serving.crt" 2>/dev/null
# The service account token signer the apiserver requires (it issues no
# tokens here: no controller-manager, no ServiceAccount admission).
openssl genrsa -out "$tmp/sa.key" 2048 2>/dev/null
openssl rsa -in "$tmp/sa.key" -pubout -out "$tmp/sa.pub" 2>/dev/null
# kubectl authenticates with a static token of a user in system:masters
# (every permission, whatever the authorizer).
token=$(openssl rand -hex 24)
echo "$token,k8s-check-admin,k8s-check-admin,system:masters" >"$tmp/tokens.csv"

kubeconfig=$tmp/kubeconfig
kc() { "$kubectl_bin" --kubeconfig "$kubeconfig" --request-timeout=60s "$@"; }
kc config set-cluster check --server "https://127.0.0.1:$api_port" --certificate-authority "$tmp/serving.crt" --embed-certs >/dev/null
kc config set-credentials admin --token "$token" >/dev/null
kc config set-context check --cluster check --user admin >/dev/null
kc config use-context check >/dev/null

# --- etcd -------------------------------------------------------------------
# One member, plaintext on loopback; no fsync (throwaway data). Each case
# uses its own key prefix, so it starts from empty storage.
log "etcd on 127.0.0.1:$etcd_port"
"$bin/etcd" --name check --data-dir "$tmp/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
	--initial-cluster "check=http://127.0.0.1:$etcd_peer_port" --unsafe-no-fsync --log-level warn \
	>"$tmp/etcd.log" 2>&1 &
etcd_pid=$!
for ((i = 0; ; i++)); do
	if curl -fsS "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; then break; fi
	if ((i > 300)) || ! kill -0 "$etcd_pid" 2>/dev/null; then
		log "etcd did not start:"
		tail -30 "$tmp/etcd.log" >&2
		exit 1
	fi
	sleep 0.1
done

# --- kube-apiserver -----------------------------------------------------------
# start_apiserver PREFIX: a kube-apiserver on its own etcd prefix, waited
# for until /readyz says ok.
#   --endpoint-reconciler-type=none: the default reconciler writes the
#     advertise address into the kubernetes Endpoints, and refuses a
#     loopback one;
#   --disable-admission-plugins=ServiceAccount: it would refuse pods whose
#     ServiceAccount does not exist, and only the controller-manager makes
#     the "default" one (no pods are made here, but Jobs' and the
#     workloads' pod templates are not affected either way);
#   --allow-privileged: as most clusters, so that the check is about the
#     manifests, not this server's policy.
api_run=0
start_apiserver() {
	local prefix=$1 i code
	api_run=$((api_run + 1))
	"$bin/kube-apiserver" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
		--etcd-servers="http://127.0.0.1:$etcd_port" --etcd-prefix="$prefix" \
		--tls-cert-file="$tmp/serving.crt" --tls-private-key-file="$tmp/serving.key" \
		--cert-dir="$tmp/cert-dir" \
		--token-auth-file="$tmp/tokens.csv" --authorization-mode=RBAC \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-account-key-file="$tmp/sa.pub" --service-account-signing-key-file="$tmp/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16 \
		--endpoint-reconciler-type=none \
		--disable-admission-plugins=ServiceAccount \
		--allow-privileged=true \
		--profiling=false \
		>"$tmp/apiserver-$api_run.log" 2>&1 &
	api_pid=$!
	for ((i = 0; ; i++)); do
		code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/serving.crt" \
			-H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" || true)
		[[ $code == 200 ]] && break
		if ((i > 1200)) || ! kill -0 "$api_pid" 2>/dev/null; then
			log "kube-apiserver did not become ready (last /readyz: $code):"
			tail -40 "$tmp/apiserver-$api_run.log" >&2
			exit 1
		fi
		sleep 0.1
	done
}

stop_apiserver() {
	stop "$api_pid"
	api_pid=
}

# --- the cases ------------------------------------------------------------------
# kustomization DIR: the kustomization file in DIR, if any.
kustomization() {
	local f
	for f in kustomization.yaml kustomization.yml Kustomization; do
		[[ -f $1/$f ]] && { echo "$1/$f"; return 0; }
	done
	return 1
}

is_component() {
	local f
	f=$(kustomization "$1") || return 1
	grep -q '^kind:[[:space:]]*Component[[:space:]]*$' "$f"
}

# users DIR: the kustomization folders (relative) whose components: list
# names the Component in DIR (paths resolved from each file's folder).
users() {
	local want f d c
	want=$(cd "$1" && pwd -P)
	while IFS= read -r f; do
		d=$(dirname "$f")
		while IFS= read -r c; do
			if [[ -n $c && -d $d/$c && $(cd "$d/$c" && pwd -P) == "$want" ]]; then
				echo "${d#"$k8s"/}"
			fi
		done < <(awk '/^components:/ { on = 1; next } on && /^[^[:space:]#-]/ { on = 0 }
			on && /^[[:space:]]*-[[:space:]]/ { sub(/^[[:space:]]*-[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); print }' "$f")
	done < <(find "$k8s" \( -name kustomization.yaml -o -name kustomization.yml -o -name Kustomization \) | sort)
	return 0 # none found is an answer, not an error (set -e, pipefail)
}

# Every folder under deploy/k8s with a kustomization, or the ones named.
dirs=()
if (($#)); then
	for d in "$@"; do
		d=${d#deploy/k8s/}
		d=${d%/}
		kustomization "$k8s/$d" >/dev/null || { log "no kustomization in $shown/$d"; exit 2; }
		dirs+=("$d")
	done
else
	while IFS= read -r f; do
		d=$(dirname "${f#"$k8s"/}")
		dirs+=("$d")
	done < <(find "$k8s" \( -name kustomization.yaml -o -name kustomization.yml -o -name Kustomization \) | sort)
fi
((${#dirs[@]})) || { log "no kustomization under deploy/k8s"; exit 1; }

# The overlay that the jobs (and any other non-overlay folder) go on: dev
# when there is one, else the base, else nothing (applied alone).
host=
if kustomization "$k8s/overlays/$on" >/dev/null; then
	host=overlays/$on
elif kustomization "$k8s/base" >/dev/null; then
	host=base
fi

# standalone DIR: whether DIR is applied alone (not on top of $host).
standalone() {
	case $1 in
	. | base | overlays/*) return 0 ;;
	esac
	[[ -z $host ]]
}

# namespaces FILE: the Namespace documents of a rendered FILE.
namespaces() {
	awk 'BEGIN { RS = "\n---\n" } /(^|\n)kind: Namespace(\n|$)/ { printf "---\n%s\n", $0 }' "$1"
}

# step NAME CMD...: runs CMD with its output on stdout (indented), keeps
# the server's warnings, and returns CMD's status.
warnings=()
step() {
	local name=$1 rc=0 out
	shift
	echo "--- $name"
	echo "\$ kubectl ${*}"
	out=$(kc "$@" 2>&1) || rc=$?
	[[ -n $out ]] && sed 's/^/    /' <<<"$out"
	# The client-side apply's warning that the Namespace (made by the
	# server-side apply just before) lacks its last-applied annotation is
	# this script's doing, not the manifests'.
	while IFS= read -r w; do
		[[ -n $w ]] && warnings+=("$case_name: $w")
	done < <(grep '^Warning:' <<<"$out" | grep -v 'missing the kubectl.kubernetes.io/last-applied-configuration annotation' | sort -u || true)
	# A pod template that would violate the PodSecurity level its
	# namespace enforces is stored, with a warning, but every pod the
	# controller then makes from it is refused: a failure, unless
	# K8S_CHECK_PSA=warn.
	if ((rc == 0)) && [[ ${K8S_CHECK_PSA:-} != warn ]] && grep -q '^Warning: would violate PodSecurity' <<<"$out"; then
		echo "    => FAILED (PodSecurity: the pods would be refused)"
		failures+=("$case_name: $name: $(grep '^Warning: would violate PodSecurity' <<<"$out" | sort -u | paste -sd'|' - | sed 's/|/ | /g')")
		return 1
	fi
	if ((rc != 0)); then
		echo "    => FAILED (exit $rc)"
		# The server's messages, one line: without the warnings and the
		# lines of the objects that were accepted.
		failures+=("$case_name: $name: $(grep -v -e '^Warning:' -e ' (server dry run)$' \
			-e ' serverside-applied$' -e ' created$' -e ' configured$' -e ' unchanged$' <<<"$out" |
			head -20 | paste -sd'|' - | sed 's/|/ | /g')")
	fi
	return "$rc"
}

# apply_dir DIR: the four steps for one kustomization folder, on the server
# as it is. Returns nonzero when any step failed.
apply_dir() {
	local dir=$1 rendered=$tmp/rendered.yaml ok=0 want got
	echo "--- kustomize $shown/$dir"
	if ! kc kustomize "$k8s/$dir" >"$rendered" 2>"$tmp/kustomize.err"; then
		sed 's/^/    /' "$tmp/kustomize.err"
		echo "    => FAILED (kustomize)"
		failures+=("$case_name: kustomize $dir: $(cat "$tmp/kustomize.err")")
		return 1
	fi
	want=$(grep -c '^kind:' "$rendered" || true)
	echo "    $want objects: $(grep '^kind:' "$rendered" | sed 's/^kind:[[:space:]]*//' | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')"
	# Namespaces first, for real: a dry run of the rest cannot find a
	# namespace that a dry run "created".
	namespaces "$rendered" >"$tmp/namespaces.yaml"
	if [[ -s $tmp/namespaces.yaml ]]; then
		step "namespaces of $dir" apply --server-side --field-manager=k8s-check -f "$tmp/namespaces.yaml" || ok=1
	fi
	step "server-side apply, dry run: $dir" apply --server-side --field-manager=k8s-check --dry-run=server -k "$k8s/$dir" || ok=1
	step "client-side apply --validate=strict, dry run: $dir" apply --validate=strict --dry-run=server -k "$k8s/$dir" || ok=1
	if ! step "server-side apply: $dir" apply --server-side --field-manager=k8s-check --validate=strict -k "$k8s/$dir"; then
		# What was refused is not there to get: say so once, above.
		echo "--- get: $dir: skipped, the apply failed"
		return 1
	fi
	if step "get: $dir" get -f "$rendered" --ignore-not-found=false \
		-o custom-columns=KIND:.kind,NAMESPACE:.metadata.namespace,NAME:.metadata.name,UID:.metadata.uid,CREATED:.metadata.creationTimestamp; then
		got=$(kc get -f "$rendered" -o name 2>/dev/null | wc -l)
		if ((got != want)); then
			echo "    => FAILED: $got of $want objects exist"
			failures+=("$case_name: get $dir: $got of $want objects exist")
			ok=1
		fi
	else
		ok=1
	fi
	return "$ok"
}

failures=()
results=()
n=0
for dir in "${dirs[@]}"; do
	case_name=$dir
	if is_component "$k8s/$dir"; then
		# A Component is applied inside the kustomizations that list it;
		# one that none lists is checked by nothing, and said so.
		used=$(users "$k8s/$dir" | paste -sd, - | sed 's/,/, /g')
		if [[ -n $used ]]; then
			log "$dir: a Component, checked through $used"
			results+=("SKIP  $dir (Component: checked through $used)")
		else
			log "$dir: a Component that no kustomization uses: NOT CHECKED"
			results+=("NOT CHECKED  $dir (Component that no kustomization uses)")
		fi
		continue
	fi
	n=$((n + 1))
	nfail=${#failures[@]}
	echo
	echo "=== $shown/$dir"
	log "$dir: fresh kube-apiserver (etcd prefix /registry-$n)"
	start_apiserver "/registry-$n"
	ok=0
	if standalone "$dir"; then
		apply_dir "$dir" || ok=1
		label=$dir
	else
		echo "(on top of $shown/$host)"
		apply_dir "$host" || ok=1
		apply_dir "$dir" || ok=1
		label="$dir (on $host)"
	fi
	stop_apiserver
	if ((ok == 0 && ${#failures[@]} == nfail)); then
		echo "=== PASS $shown/$label"
		results+=("PASS  $label")
		log "$dir: PASS"
	else
		echo "=== FAIL $shown/$label"
		results+=("FAIL  $label")
		log "$dir: FAIL"
	fi
done

# Manifests no kustomization includes (their folder has none): not
# applied, listed so that nothing is silently left out.
unchecked=()
while IFS= read -r d; do
	kustomization "$d" >/dev/null && continue
	for f in "$d"/*.yaml "$d"/*.yml; do
		[[ -f $f ]] && unchecked+=("${f#"$k8s"/}")
	done
done < <(find "$k8s" -type d | sort)

echo
echo "=== summary ($("$kubectl_bin" version --client 2>/dev/null | head -1), $("$bin/kube-apiserver" --version))"
printf '%s\n' "${results[@]}"
for f in "${unchecked[@]}"; do
	echo "NOT CHECKED  $f (its folder has no kustomization; kinds: $(grep '^kind:' "$k8s/$f" | sed 's/^kind:[[:space:]]*//' | sort -u | paste -sd, -))"
done
if ((${#warnings[@]})); then
	echo
	echo "warnings from the server:"
	printf '  %s\n' "${warnings[@]}" | sort -u
fi
if ((${#failures[@]})); then
	echo
	echo "rejected:"
	printf '%s\n' "${failures[@]}" | sed 's/^/  /'
	exit 1
fi
