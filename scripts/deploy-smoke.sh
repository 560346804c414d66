#!/usr/bin/env bash
# Smoke test of the deployable cluster: builds the dpcnn image, starts
# deploy/compose (etcd, two coordinators, three workers, all over mutual
# TLS with certificates the compose file's "certs" service makes), checks
# that calls without the token or in plaintext are refused, trains a tiny
# job through cnnctl, checks it SUCCEEDED, prints its status, and takes the
# cluster down with its volumes, whether or not it passed.
#
#   scripts/deploy-smoke.sh                 # build the image, then test
#   SKIP_BUILD=1 scripts/deploy-smoke.sh    # test the dpcnn:dev already built
#
# Needs docker with compose (the plugin or docker-compose), and Go unless
# SKIP_BUILD=1. Takes about a minute once the image is built.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DPCNN_IMAGE=${DPCNN_IMAGE:-dpcnn:dev}
project=${COMPOSE_PROJECT:-dpcnn-smoke}
job=smoke-$(date +%s)
timeout_s=${SMOKE_TIMEOUT:-300}

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null; then
	compose=(docker-compose)
else
	echo "deploy-smoke: neither 'docker compose' nor docker-compose is installed" >&2
	exit 1
fi
compose+=(-p "$project" -f "$repo/deploy/compose/docker-compose.yaml")

log() { echo "deploy-smoke: $*" >&2; }

# cnnctl in the first coordinator's container, on the cluster network,
# where the address a standby names for the leader resolves. The
# container's environment gives it the CA (DPCNN_TLS_CA) and the token
# (DPCNN_TOKEN_FILE); "${env[@]}" may override them for one call.
env=()
cnnctl() { "${compose[@]}" exec -T "${env[@]}" coordinator-1 cnnctl "$@" --coordinator coordinator-1:7070; }

# refused WANT ARGS...: cnnctl ARGS must fail with WANT in its output.
refused() {
	local want=$1 out
	shift
	if out=$(cnnctl "$@" 2>&1); then
		log "cnnctl $* was served, want a refusal:"
		echo "$out" >&2
		exit 1
	fi
	if ! grep -q -- "$want" <<<"$out"; then
		log "cnnctl $* failed, but not with '$want':"
		echo "$out" >&2
		exit 1
	fi
	log "refused as expected: cnnctl $* ($want)"
}

teardown() {
	local rc=$?
	if ((rc != 0)); then
		log "FAILED (exit $rc); the cluster's last logs:"
		"${compose[@]}" logs --no-color --tail=40 >&2 || true
	fi
	log "tearing down"
	"${compose[@]}" down -v --remove-orphans >&2 || true
	exit "$rc"
}

if [[ -z ${SKIP_BUILD:-} ]]; then
	IMAGE=$DPCNN_IMAGE "$repo/deploy/docker/build.sh"
fi
docker image inspect "$DPCNN_IMAGE" >/dev/null

trap teardown EXIT
trap 'exit 130' INT TERM
log "starting the cluster (project $project)"
"${compose[@]}" up -d

deadline=$((SECONDS + timeout_s))
log "waiting for a leader and three idle workers"
until out=$(cnnctl workers 2>&1) && [[ $(grep -cE '^worker-[0-9]+ +idle ' <<<"$out") -eq 3 ]]; do
	if ((SECONDS > deadline)); then
		log "no leader with three workers after ${timeout_s}s; last answer:"
		echo "$out" >&2
		exit 1
	fi
	sleep 2
done
echo "$out"

# Without the token the coordinator refuses the call (and logs it); in
# plaintext cnnctl refuses to dial anything but loopback.
env=(-e DPCNN_TOKEN_FILE=)
refused "refused our credentials" workers
env=(-e DPCNN_TLS_CA= -e DPCNN_TLS_CERT= -e DPCNN_TLS_KEY= -e DPCNN_TOKEN_FILE=)
refused "plaintext is allowed only on a loopback address" workers --insecure
env=()
# (The logs whole, then grep: grep -q would end the pipe early, and
# pipefail would take the writer's broken pipe for a failure.)
logs=$("${compose[@]}" logs --no-color coordinator-1 coordinator-2 2>&1)
if ! grep -q "refused unauthenticated call" <<<"$logs"; then
	log "no coordinator logged the refused call"
	exit 1
fi

# A tiny job: 300 training images in steps of 50, cut into micro-batches of
# 10 so that every worker gets work, two epochs, 200 test images.
log "submitting job $job"
cnnctl submit job --id "$job" --name deploy-smoke --net simple --epochs 2 --batch 50 --micro-batch 10 \
	--train-limit 300 --test-limit 200 --seed 11 --wait --quiet

cnnctl status "$job"
state=$(cnnctl status "$job" -o json | tr -d ' \n' | sed -n 's/.*"state":"\([A-Z_]*\)".*/\1/p')
if [[ $state != JOB_STATE_SUCCEEDED ]]; then
	log "job $job ended $state, want JOB_STATE_SUCCEEDED"
	exit 1
fi
log "PASS: job $job succeeded"
