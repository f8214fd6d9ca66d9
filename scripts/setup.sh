#!/usr/bin/env bash
# Installs every build, test and run dependency from Debian bookworm packages.
# Idempotent and non-interactive: packages already present are left alone, and
# nothing is downloaded except through apt.
set -euo pipefail
#
#   scripts/setup.sh                        build, test and run dependencies
#   AQUEDUCT_WITH_BAZEL=1 scripts/setup.sh  also Bazel (what CI needs)
#   AQUEDUCT_BUILD_ONLY=1 scripts/setup.sh  only what building the binaries
#                                           needs (the image's build stage)

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev
  libabsl-dev libhiredis-dev libjemalloc-dev libssl-dev zlib1g-dev libzstd-dev
  prometheus-cpp-dev
  # Boost.Beast and Asio (header-only): the HTTP/JSON gateway
  libboost-dev
  # googleapis' google/rpc/*.proto (error details on every failed call)
  # and google/api/{annotations,http}.proto (the HTTP mapping);
  # grpc-gateway's copy predates google.rpc.ErrorInfo
  golang-github-gogo-googleapis-dev
)
if [[ "${AQUEDUCT_BUILD_ONLY:-0}" != 1 ]]; then
PACKAGES+=(
  openssl redis-server redis-tools
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  prometheus
  procps
  # deploy/run-local.sh waits for the gateway with it
  curl
  # The image's root file system (deploy/image/build-rootfs.sh) and its test
  debootstrap
  # protoc-gen-swagger: the OpenAPI document from the protos' HTTP
  # annotations (tools/openapi, checked by the test command)
  golang-grpc-gateway
  # The clinician console's browser test (tests/gateway): headless Chromium
  chromium
)
# Test-time tools that may come from elsewhere on a developer's machine:
# Debian's only when the command is missing. kubectl builds the Kubernetes
# overlays (kubectl kustomize); node and npm run the manifests' schema
# check (tests/kubernetes).
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)
fi
# The Bazel build (CI builds both); the run command does not need it.
if [[ "${AQUEDUCT_WITH_BAZEL:-0}" == 1 ]]; then
  PACKAGES+=(bazel-bootstrap bazel-rules-java)
fi
# The libFuzzer targets (scripts/fuzz.sh): clang and its fuzzing runtime.
if [[ "${AQUEDUCT_WITH_FUZZ:-0}" == 1 ]]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's redis-server package starts a system Redis on 6379; Aqueduct always
# starts its own on another port, so the system one is left as it is.
