#!/usr/bin/env bash
# The Kubernetes manifests build and validate: secrets made by
# deploy/make-secrets.sh, every overlay (and the re-scoring Job) built with
# `kubectl kustomize`, each object validated against the Kubernetes schema
# (validate.cjs, kubernetes-models) and the operator's promises checked
# (invariants.cjs). Test-time npm packages come from tests/npm.
#
#   tests/kubernetes/kustomize_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
(($# == 2)) || { echo "usage: $0 SOURCE_DIR BUILD_DIR" >&2; exit 2; }
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
for tool in kubectl node npm openssl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/setup.sh installs it)"
done

# The validator's packages (tests/npm), once per lock file.
NODE_PATH=$("$SRC/tests/npm/install.sh" "$BUILD") || fail "could not install the validator's npm packages"
export NODE_PATH

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$SRC/deploy/kubernetes" "$WORK/kubernetes"
rm -rf "$WORK/kubernetes/base/secrets"
K=$WORK/kubernetes

# Without the secrets, the build stops and names the missing file.
if out=$(kubectl kustomize "$K/overlays/single-redis" 2>&1); then
  fail "kustomize built the manifests without their secrets"
fi
grep -q "secrets/" <<<"$out" || fail "the error without secrets does not name the missing file: $out"

"$SRC/deploy/make-secrets.sh" "$K/base/secrets" >/dev/null
for target in overlays/single-redis overlays/sentinel rescore-job; do
  name=$(basename "$target")
  kubectl kustomize "$K/$target" >"$WORK/$name.yaml" 2>"$WORK/$name.err" ||
    fail "kubectl kustomize $target: $(cat "$WORK/$name.err")"
  node "$SRC/tests/kubernetes/validate.cjs" "$WORK/$name.yaml" >"$WORK/$name.validate" ||
    { cat "$WORK/$name.validate"; fail "$target: objects do not validate against the Kubernetes schema"; }
  tail -1 "$WORK/$name.validate"
  # Every image is the registry's, not the placeholder names the bases use.
  if grep -qE '^ *image: aqueduct(-redis)?$' "$WORK/$name.yaml"; then
    fail "$target: an image name was not rewritten by the images transformer"
  fi
done
node "$SRC/tests/kubernetes/invariants.cjs" "$WORK/single-redis.yaml"
node "$SRC/tests/kubernetes/invariants.cjs" "$WORK/sentinel.yaml"
# The Job uses the base's CA ConfigMap and a token Secret the operator makes.
node "$SRC/tests/kubernetes/invariants.cjs" "$WORK/rescore-job.yaml" --external aqueduct-batch-token,aqueduct-ca
grep -q "^  name: aqueduct-ca$" "$WORK/single-redis.yaml" || fail "the base has no aqueduct-ca ConfigMap for the Job"

# The Sentinel overlay's start scripts parse.
for s in "$K"/overlays/sentinel/*.sh; do sh -n "$s" || fail "$s does not parse"; done
echo "PASS: every overlay builds and validates"
