#!/bin/bash
# Side by side on one machine, in alternating rounds: each cnnctl binary
# given, then PyTorch NCHW and channels-last (scripts/bench_torch.py), one
# round of `bench train` each, ROUNDS times; then the median and range of
# each one's training and inference images/s. Alternating keeps a noisy,
# shared machine's drift out of the comparison.
#
#   scripts/bench_sidebyside.sh ROUNDS CNNCTL [CNNCTL ...]
#   e.g. scripts/bench_sidebyside.sh 5 /tmp/cnnctl-before /tmp/cnnctl-after
set -euo pipefail
rounds=$1
shift
py=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
field='import json,sys; d=json.load(sys.stdin); print(sys.argv[1], d["trainImagesPerSec"], d["inferImagesPerSec"])'
for r in $(seq "$rounds"); do
	echo "round $r of $rounds" >&2
	for bin in "$@"; do
		"$bin" bench train --backend cpu --net deep --batch 100 --repeat 1 --steps 30 --json 2>/dev/null | "$py" -c "$field" "$bin" >>"$out"
	done
	"$py" "$here/bench_torch.py" --threads 2 --repeat 1 --steps 30 --json 2>/dev/null | "$py" -c "$field" torch-nchw >>"$out"
	"$py" "$here/bench_torch.py" --threads 2 --repeat 1 --steps 30 --channels-last --json 2>/dev/null | "$py" -c "$field" torch-channels-last >>"$out"
done
"$py" - "$out" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, train, infer = line.split()
    runs[name].append((float(train), float(infer)))
for name, v in runs.items():
    t, i = [x[0] for x in v], [x[1] for x in v]
    print(f"{name}: train {statistics.median(t):.0f} ({min(t):.0f}-{max(t):.0f}) images/s, "
          f"inference {statistics.median(i):.0f} ({min(i):.0f}-{max(i):.0f}) images/s, {len(v)} rounds")
PY
