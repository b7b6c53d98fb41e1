#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time over its committed seed corpus. New inputs go to a work
# directory in the build tree, so the committed seeds stay as they are; a crash fails the run and leaves
# its reproducer in the work directory.
set -euo pipefail
fuzzer=$1 seconds=$2 seeds=$3 work=$4
mkdir -p "$work/corpus"
dict=$(dirname "$seeds")/../$(basename "$seeds").dict
# A fixed seed makes the runs of the test suite repeat the same mutations (a faster machine only goes further
# along them); FUZZ_SEED=0 lets libFuzzer pick one, for longer exploratory runs.
args=(-max_total_time="$seconds" -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
  -artifact_prefix="$work/")
[ -f "$dict" ] && args+=(-dict="$dict")
exec "$fuzzer" "${args[@]}" "$work/corpus" "$seeds"
