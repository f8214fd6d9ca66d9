#!/usr/bin/env bash
# The OpenAPI (Swagger 2.0) document of the HTTP API, written from the
# protos' google.api.http annotations by Debian's protoc-gen-swagger
# (golang-grpc-gateway), one file per service, then merged into
# data/openapi/aqueduct.swagger.json (merge.cjs). The gateway serves it at
# /openapi.json.
#
#   tools/openapi/openapi.sh           rewrite the document
#   tools/openapi/openapi.sh --check   fail if the document differs from
#                                      what the protos say (the test command)
set -euo pipefail
cd "$(dirname "$0")/../.."
GOOGLEAPIS=/usr/share/gocode/src/github.com/gogo/googleapis
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protos=(protos/intake/v1/intake_service.proto protos/intake/v1/fhir_export_service.proto
  protos/referral/v1/referral_service.proto protos/scoring/v1/scoring_service.proto)
for proto in "${protos[@]}"; do
  # One file per run: the plugin will not merge across proto packages.
  protoc -I. -I"$GOOGLEAPIS" \
    --plugin=protoc-gen-swagger="$PWD/tools/openapi/protoc-gen-swagger-optional" \
    --swagger_out="$out" "$proto"
done
node tools/openapi/merge.cjs "${protos[@]/#/$out/}" >"$out/aqueduct.swagger.json"
target=data/openapi/aqueduct.swagger.json
if [[ "${1:-}" == --check ]]; then
  if ! diff -u "$target" "$out/aqueduct.swagger.json"; then
    echo "openapi: $target differs from the protos: run tools/openapi/openapi.sh" >&2
    exit 1
  fi
  echo "openapi: $target matches the protos"
else
  mkdir -p "$(dirname "$target")"
  cp "$out/aqueduct.swagger.json" "$target"
  echo "openapi: wrote $target"
fi
