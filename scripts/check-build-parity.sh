#!/usr/bin/env bash
# The CMake and Bazel builds must declare the same targets (the Abseil
# model: twin files, same names). Prints the difference and fails if any.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake_targets=$(grep -rhoE 'aqueduct_cc_(library|binary|test)\(NAME [A-Za-z0-9_-]+' \
                  --include=CMakeLists.txt . | awk '{print $2}' | sort -u)
cmake_targets=$(printf '%s\n' $cmake_targets api_cc_proto googleapis_rpc_cc_proto googleapis_api_cc_proto | sort -u)
bazel_targets=$(
  { grep -rhoE '^ *name = "[A-Za-z0-9_-]+"' --include=BUILD.bazel common services tools protos tests bench \
      | sed -E 's/.*"(.*)"/\1/'
    # Tests are declared in a list comprehension: ("name", "src", ...)
    grep -hoE '^ *\("[a-z0-9_]+_test",' tests/BUILD.bazel | sed -E 's/[ ("]//g; s/,//'
  } | grep -vE '_gen$' | sort -u)
if ! diff <(echo "$cmake_targets") <(echo "$bazel_targets") >/tmp/aqueduct-parity.diff; then
  echo "build parity: CMake (<) and Bazel (>) targets differ:" >&2
  cat /tmp/aqueduct-parity.diff >&2
  exit 1
fi
echo "build parity: $(echo "$cmake_targets" | wc -l) targets in both builds"
