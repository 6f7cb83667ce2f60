#!/usr/bin/env bash
# Runs every fuzz target in turn: 10^6 executions or 10 minutes each, whichever comes first, at the lowest priority.
# Usage: fuzz/run-all.sh [RUNS] [SECONDS] [TARGET…]   (needs `cargo install cargo-fuzz`; works on stable through
# RUSTC_BOOTSTRAP=1). Findings land in fuzz/artifacts/TARGET/; keep each as a regression test.
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"; secs="${2:-600}"; shift 2 2>/dev/null || shift $#
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(callback_query token_answer error_body scrubber retry_after return_path envelope store_record)
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  start=$(date +%s)
  RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run -s none -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -runs="$runs" -max_total_time="$secs" -print_final_stats=1 > "fuzz/$t.log" 2>&1
  rc=$?
  execs=$(grep -E '^stat::number_of_executed_units' "fuzz/$t.log" | awk '{print $2}')
  echo "$t: exit $rc, ${execs:-?} executions in $(( $(date +%s) - start )) s"
done
