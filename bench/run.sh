#!/usr/bin/env bash
# Builds Aqueduct in Release (build-release/, -j2) and prints the whole
# benchmark table in one run: the echo ceiling, Redis's own ceiling,
# SubmitAnswers, whole screenings, scoring in-process, re-scoring of
# 1,000,000 stored screenings, Redis bytes per screening and each service's
# peak RSS, each with its target, then issue 25's ratios, each to a ceiling
# measured in the same run. Everything runs on loopback and stops by itself
# (about 5 minutes on a 2-core machine after the build).
# Arguments go to aqueduct_bench, e.g. bench/run.sh --seconds=10 --rescore=300000
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
if [[ ! -f build-release/CMakeCache.txt ]]; then
  cmake -S . -B build-release "${generator[@]}" -DCMAKE_BUILD_TYPE=Release > /dev/null
fi
cmake --build build-release -j2 --target aqueduct_bench
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
echo
AQUEDUCT_SOURCE_DIR=$root AQUEDUCT_BINARY_DIR=$root/build-release exec build-release/bench/aqueduct_bench "$@"
