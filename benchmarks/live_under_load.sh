#!/usr/bin/env bash
# The tests that keep real time (marked realtime: the live tests, the inference-server tests)
# N times in a row (default 5) with a CPU hog beside them: prints each run's
# pytest summary and any test re-run on a fresh JACK server. Usage: bash benchmarks/live_under_load.sh [N]
set -u
cd "$(dirname "$0")/.."
runs="${1:-5}"
python3 -c 'while 1: pass' &
hog=$!
trap 'kill $hog 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
    out=$(CI=true python3 -m pytest -q -p no:cacheprovider -p no:xdist -rfEw -m realtime 2>&1)
    status=$?
    echo "run $i: exit $status: $(echo "$out" | tail -1)"
    echo "$out" | grep -E "^FAILED|^ERROR|broke its graph during" | grep -v "warnings.warn" | sort -u
    [ "$status" -eq 0 ] || failed=$((failed + 1))
done
echo "$failed of $runs runs failed"
[ "$failed" -eq 0 ]
