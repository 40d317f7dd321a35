#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets (cargo-fuzz; its -Z flags on this stable toolchain through
# RUSTC_BOOTSTRAP, as the loader's build-std), seeds each corpus from the fixtures, and runs each
# target for SECONDS. Prints the executions per target; a crash fails (its input is kept in
# tests/fuzz/artifacts/TARGET/ for a regression test).
# usage: run.sh SECONDS TARGET...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=$1; shift
export RUSTC_BOOTSTRAP=1
# Extraction targets write here (tmpfs when there is one: fast, and never the project's disk).
export FUZZ_TMP=${FUZZ_TMP:-$( [ -w /dev/shm ] && echo /dev/shm || echo /tmp )}
cd "$top"
# ASan where the toolchain ships its runtime, else coverage-guided without a sanitizer.
san=address
if ! ls "$(rustc --print sysroot)"/lib/rustlib/x86_64-unknown-linux-gnu/lib/ | grep -q asan; then
  san=none
fi
cargo fuzz build --fuzz-dir tests/fuzz -O -s "$san" >&2
bash "$here/seed.sh" "$here/corpus"
status=0
for t in "$@"; do
  mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
  log=$(mktemp)
  if cargo fuzz run --fuzz-dir tests/fuzz -O -s "$san" "$t" "$here/corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=4096 -max_len=1048576 -print_final_stats=1 \
      -artifact_prefix="$here/artifacts/$t/" >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    printf '  %-22s %10s executions in %ss, no crash\n' "$t" "$execs" "$secs"
  else
    echo "  $t: CRASH (input in tests/fuzz/artifacts/$t/):"
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 | sed 's/^/    /'
    status=1
  fi
  rm -f "$log"
done
exit $status
