#!/usr/bin/env bash
# Every RPC, message field and enum value in protos/ has a comment on the
# line(s) just above it (AIP-192; the API is the contract with mobile apps,
# portals and batch jobs). Prints each one missing and fails if any.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=$(awk '
  FNR == 1 { prev = "" }
  /^[[:space:]]*$/ { next }
  {
    line = $0
    is_decl = (line ~ /^[[:space:]]*rpc[[:space:]]/) ||
              (line ~ /^[[:space:]]*(repeated[[:space:]]+|optional[[:space:]]+)?[A-Za-z_][A-Za-z0-9_.]*(<[^>]*>)?[[:space:]]+[a-z_][a-z0-9_]*[[:space:]]*=[[:space:]]*[0-9]+/) ||
              (line ~ /^[[:space:]]*[A-Z][A-Z0-9_]*[[:space:]]*=[[:space:]]*[0-9]+;/)
    if (is_decl && prev !~ /^[[:space:]]*\/\//) print FILENAME ":" FNR ": " line
    prev = line
  }' $(find protos -name '*.proto' | sort))
if [[ -n "$missing" ]]; then
  echo "proto comments: these declarations have no comment:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "proto comments: every RPC, field and enum value is documented"
