#!/usr/bin/env bash
# Builds the runtime image's root file system without a container engine:
# Debian bookworm (debootstrap, minbase) with exactly the packages of
# runtime-packages.txt, the user aqueduct (10001:10001), and `cmake
# --install` of a build tree into /usr/local. The Dockerfile's runtime
# stage makes the same tree; tests/image/rootfs_test.sh runs the services
# in this one.
#
#   deploy/image/build-rootfs.sh ROOTFS BUILD_DIR
#
# Needs root (debootstrap, chroot) and Debian's mirror (AQUEDUCT_DEBIAN_MIRROR,
# default http://deb.debian.org/debian). The debootstrap step runs once per
# ROOTFS (it is skipped when ROOTFS already holds a system made from the
# same package list); the install runs every time.
set -euo pipefail
(($# == 2)) || { echo "usage: $0 ROOTFS BUILD_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOTFS=$1
BUILD_DIR=$2
MIRROR=${AQUEDUCT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[[ $(id -u) == 0 ]] || { echo "$0: needs root (debootstrap and chroot)" >&2; exit 1; }
[[ -f "$BUILD_DIR/cmake_install.cmake" ]] || { echo "$0: $BUILD_DIR is not a configured CMake build" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "$0: debootstrap is not installed (scripts/setup.sh installs it)" >&2; exit 1; }

packages=$(grep -v '^#' "$HERE/runtime-packages.txt" | grep -v '^$' | paste -sd, -)
stamp=$ROOTFS/etc/aqueduct-runtime-packages
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$packages" ]]; then
  rm -rf "$ROOTFS"
  mkdir -p "$ROOTFS"
  echo "[build-rootfs] debootstrap bookworm (minbase + $packages) into $ROOTFS"
  debootstrap --variant=minbase --include="$packages" bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOTFS.debootstrap.log" >&2; exit 1; }
  chroot "$ROOTFS" groupadd --gid 10001 aqueduct
  chroot "$ROOTFS" useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin aqueduct
  # What a slim image does not need at run time.
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  echo "$packages" >"$stamp"
fi
cmake --install "$BUILD_DIR" --prefix "$ROOTFS/usr/local" >/dev/null
echo "[build-rootfs] $ROOTFS: Debian bookworm runtime + Aqueduct in /usr/local"
