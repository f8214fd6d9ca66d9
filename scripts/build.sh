#!/usr/bin/env bash
# Configures and builds the CMake tree in ./build (or $AQUEDUCT_BUILD_DIR)
# with two jobs. Extra arguments are build targets (default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${AQUEDUCT_BUILD_DIR:-build}
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${AQUEDUCT_BUILD_TYPE:-RelWithDebInfo}"
fi
if (($# > 0)); then
  targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$BUILD_DIR" -j2 "${targets[@]}"
else
  cmake --build "$BUILD_DIR" -j2
fi
