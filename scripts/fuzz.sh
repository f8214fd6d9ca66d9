#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang with ASan and UBSan) in
# build-fuzz/ and runs each for a bounded time on a copy of its seed corpus
# (tests/fuzz/corpus/<target>/, never changed by a run). Fails on the first
# finding, whose input is kept in build-fuzz/findings/. Prints each target's
# executions.
#
#   scripts/fuzz.sh                 20 s per target (the test command's run)
#   scripts/fuzz.sh --seconds=600   a long local run
#   scripts/fuzz.sh --runs=10000000 --only=rules_fuzzer
#                                   a fixed number of executions, one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
runs=-1
targets="rules_fuzzer score_request_fuzzer sealed_fuzzer auth_fuzzer names_fuzzer"
for arg in "$@"; do
  case "$arg" in
    --seconds=*) seconds=${arg#--seconds=} ;;
    --runs=*) runs=${arg#--runs=} seconds=0 ;;
    --only=*) targets=${arg#--only=} ;;
    *) echo "usage: scripts/fuzz.sh [--seconds=N | --runs=N] [--only=TARGET]" >&2; exit 2 ;;
  esac
done
DIR=${AQUEDUCT_FUZZ_BUILD_DIR:-build-fuzz}
if [[ ! -f "$DIR/build.ninja" ]]; then
  cmake -S . -B "$DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DAQUEDUCT_FUZZ=ON -DAQUEDUCT_BUILD_TESTS=OFF -DAQUEDUCT_JEMALLOC=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
    >/dev/null
fi
ninja -C "$DIR" -j2 fuzzers
mkdir -p "$DIR/findings"
total=0
for target in $targets; do
  corpus="$DIR/corpus/$target"
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log="$DIR/$target.log"
  if ! AQUEDUCT_SOURCE_DIR=$PWD "$DIR/tests/fuzz/$target" \
      -max_total_time="$seconds" -runs="$runs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$DIR/findings/$target-" \
      "$corpus" >"$log" 2>&1; then
    echo "fuzz: $target found a crash, leak or timeout; input in $DIR/findings/, log $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "fuzz: $target: ${executed:-?} executions, no finding"
  total=$((total + ${executed:-0}))
done
echo "fuzz: $total executions in all, no finding"
