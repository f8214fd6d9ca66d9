#!/usr/bin/env bash
# Runs every test. On a fresh Debian 12 machine this installs what is
# missing (scripts/setup.sh), builds with CMake and runs ctest (unit, grpc
# and integration tiers: real redis-server, real service binaries), checks
# that CMake and Bazel declare the same targets, then builds every Bazel
# target offline and runs the Bazel tests.
#
#   scripts/test.sh                   everything (what CI runs)
#   scripts/test.sh --no-bazel        skip the Bazel build and tests
#   scripts/test.sh --no-sanitizers   skip the ASan/UBSan build and run
#   scripts/test.sh --no-fuzz         skip the libFuzzer build and bounded run
#   scripts/test.sh -L unit           extra arguments go to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

with_bazel=1
with_sanitizers=1
with_fuzz=1
ctest_args=()
for arg in "$@"; do
  case "$arg" in
    --no-bazel) with_bazel=0 ;;
    --no-sanitizers) with_sanitizers=0 ;;
    --no-fuzz) with_fuzz=0 ;;
    *) ctest_args+=("$arg") ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

step "dependencies (Debian packages)"
AQUEDUCT_WITH_BAZEL=$with_bazel AQUEDUCT_WITH_FUZZ=$with_fuzz ./scripts/setup.sh

step "CMake build (-j2)"
./scripts/build.sh

step "ctest"
(cd "${AQUEDUCT_BUILD_DIR:-build}" && ctest -j2 --output-on-failure "${ctest_args[@]}")

step "static checks (build parity, API comments, C++ format)"
./scripts/check-build-parity.sh
./scripts/check-proto-comments.sh
./scripts/check-format.sh

if ((with_sanitizers)); then
  step "AddressSanitizer + UndefinedBehaviorSanitizer build and ctest"
  SAN_DIR=${AQUEDUCT_SANITIZER_BUILD_DIR:-build-asan}
  if [[ ! -f "$SAN_DIR/build.ninja" ]]; then
    cmake -S . -B "$SAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
      -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
  fi
  cmake --build "$SAN_DIR" -j2
  # Benchmarks are not run under sanitizers, except the one-run harness's
  # seconds-long smoke: its callbacks and channel lifetimes are exactly what
  # they check (a use-after-free there once reached CI as a rare crash).
  (cd "$SAN_DIR" && ASAN_OPTIONS=detect_leaks=1 ctest -j2 --output-on-failure -LE bench "${ctest_args[@]}")
  if ((${#ctest_args[@]} == 0)); then
    (cd "$SAN_DIR" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -R '^aqueduct_bench_smoke$')
  fi
fi

if ((with_fuzz)); then
  step "libFuzzer targets (clang, ASan/UBSan), 20 s each on their seed corpora"
  ./scripts/fuzz.sh --seconds=20
fi

if ((with_bazel)); then
  step "Bazel build and test (offline, Debian bazel-bootstrap)"
  bazel build //...
  bazel test //tests/... --test_tag_filters=-manual
  bazel shutdown
fi
step "all tests passed"
