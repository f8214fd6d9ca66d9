#!/usr/bin/env bash
# Fails when a C++ source file is not in .clang-format's layout (Debian
# bookworm's clang-format 14, which scripts/setup.sh installs). Fix with:
#   git ls-files '*.cc' '*.h' ':!third_party' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format > /dev/null || { echo "check-format: needs clang-format (scripts/setup.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.cc' '*.h' ':!third_party')
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" > /dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]} > 0)); then
  echo "check-format: ${#bad[@]} file(s) not in .clang-format's layout:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "fix: git ls-files '*.cc' '*.h' ':!third_party' | xargs clang-format -i" >&2
  exit 1
fi
echo "format: all ${#files[@]} C++ files in .clang-format's layout"
