#!/usr/bin/env bash
# Runs every test. On a fresh Debian 12 machine this installs what is
# missing (scripts/setup.sh), builds with CMake and runs ctest (unit, grpc
# and integration tiers: real redis-server, real service binaries), checks
# that CMake and Bazel declare the same targets, then builds every Bazel
# target offline and runs the Bazel tests.
#
#   scripts/test.sh                   everything (what CI runs)
#   scripts/test.sh --no-bazel        skip the Bazel build and tests
#   scripts/test.sh --no-sanitizers   skip the ASan/UBSan and TSan builds and runs
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

# Each step says when it started (seconds since this script began), so a
# slow step shows in CI's log.
step() { printf '\n==> %s (at %d s)\n' "$*" "$SECONDS"; }

step "dependencies (Debian packages)"
AQUEDUCT_WITH_BAZEL=$with_bazel AQUEDUCT_WITH_FUZZ=$with_fuzz ./scripts/setup.sh

step "CMake build (-j2)"
./scripts/build.sh

step "ctest"
(cd "${AQUEDUCT_BUILD_DIR:-build}" && ctest -j2 --output-on-failure "${ctest_args[@]}")

step "static checks (build parity, API comments, C++ format, alerting rules)"
./scripts/check-build-parity.sh
./scripts/check-proto-comments.sh
./scripts/check-format.sh
# The alerting rules parse, and fire (or stay quiet) on the series their
# unit tests feed them (Debian's promtool, from the prometheus package).
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)

if ((with_sanitizers)); then
  step "AddressSanitizer + UndefinedBehaviorSanitizer build and ctest"
  SAN_DIR=${AQUEDUCT_SANITIZER_BUILD_DIR:-build-asan}
  # -g1 (line tables): reports name functions and lines, at a fraction of
  # full debug information's compile and link time.
  if [[ ! -f "$SAN_DIR/build.ninja" ]]; then
    cmake -S . -B "$SAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
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

  step "ThreadSanitizer build and ctest"
  TSAN_DIR=${AQUEDUCT_TSAN_BUILD_DIR:-build-tsan}
  if [[ ! -f "$TSAN_DIR/build.ninja" ]]; then
    # -U__SANITIZE_THREAD__: Debian's protobuf and Abseil are not built
    # with the sanitizer, and their headers change class layouts when it
    # is on (protobuf's MapFieldBase, Abseil's waiter), which would not
    # match the libraries. The code is instrumented all the same.
    cmake -S . -B "$TSAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
      -DCMAKE_CXX_FLAGS="-fsanitize=thread -U__SANITIZE_THREAD__ -O1 -fno-omit-frame-pointer" \
      -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DAQUEDUCT_BUILD_BENCH=OFF
  fi
  cmake --build "$TSAN_DIR" -j2
  # What the sanitizer cannot see and why, for each setting:
  # tests/tsan.supp and tests/testing/tsan_absl_sync.cc.
  tsan_base="ignore_noninstrumented_modules=1 suppressions=$PWD/tests/tsan.supp"
  # The build must see the Abseil locks (silent) and see a race (reported).
  TSAN_OPTIONS="$tsan_base" "$TSAN_DIR/tsan_canary" guarded
  if TSAN_OPTIONS="$tsan_base" "$TSAN_DIR/tsan_canary" unguarded 2>"$TSAN_DIR/canary.txt" ||
      ! grep -q 'ThreadSanitizer: data race' "$TSAN_DIR/canary.txt"; then
    echo "ThreadSanitizer build did not report the canary's race" >&2
    exit 1
  fi
  echo "tsan canary: guarded run silent, unguarded run reported"
  # Every process writes its reports to a file (the services the
  # end-to-end tests start are killed at the end, so their exit status
  # says nothing); any report fails the step, and so does a test that fails
  # under the sanitizer.
  reports="$(cd "$TSAN_DIR" && pwd)/tsan-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  # exitcode=0: a report does not stop the process, so every test runs and
  # every report is collected before the step fails.
  tsan_ctest=0
  (cd "$TSAN_DIR" && TSAN_OPTIONS="$tsan_base exitcode=0 log_path=$reports/report" \
    ctest -j2 --output-on-failure -LE bench "${ctest_args[@]}") || tsan_ctest=$?
  if compgen -G "$reports/report.*" >/dev/null; then
    echo "ThreadSanitizer reports (one file per process):" >&2
    cat "$reports"/report.* >&2
    exit 1
  fi
  ((tsan_ctest == 0)) || exit "$tsan_ctest"
  echo "ThreadSanitizer: no report from any process"
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
