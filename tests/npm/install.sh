#!/usr/bin/env bash
# Installs the test-time npm packages (package.json, pinned by
# package-lock.json) into BUILD_DIR/npm-tools, once per lock file, and
# prints the node_modules directory for NODE_PATH. Never part of what
# ships; needs node and npm (scripts/setup.sh installs Debian's).
#   tests/npm/install.sh BUILD_DIR
set -euo pipefail
(($# == 1)) || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
TOOLS=$(cd "$1" && pwd)/npm-tools
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
done
# One install at a time (ctest may start two tests that need it at once).
exec 9>"$TOOLS.lock"
flock 9
if ! cmp -s "$HERE/package-lock.json" "$TOOLS/package-lock.json" || [[ ! -d "$TOOLS/node_modules" ]]; then
  rm -rf "$TOOLS" && mkdir -p "$TOOLS"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$TOOLS/"
  (cd "$TOOLS" && npm ci --no-audit --no-fund --loglevel=error) >&2 ||
    { rm -rf "$TOOLS"; echo "$0: npm ci failed" >&2; exit 1; }
fi
echo "$TOOLS/node_modules"
