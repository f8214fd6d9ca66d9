#!/usr/bin/env bash
# Makes common/compress/dictionary_<id>.inc (id 3 now), the zstd dictionary intake and
# referral pack stored values with (see common/compress/compress.h), and
# prints how well it packs values it was not trained on.
#
# NEVER run it to replace an existing dictionary_<id>.inc: values packed with one
# need its exact bytes forever (compress_test pins their SHA-256). A better
# dictionary is a new id: change DICT_ID and OUT below, add the id to
# compress.cc (readers keep every earlier one) and pin the new file.
#
# Needs the zstd command line tool (Debian package zstd) and a build
# (default build-release/; first argument to use another). Deterministic:
# the same sources give the same bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${1:-build-release}
DICT_ID=${DICT_ID:-3}
OUT=${OUT:-/tmp/aqueduct-dictionary_${DICT_ID}.inc}
command -v zstd > /dev/null || { echo "make.sh: needs the zstd tool (apt-get install zstd)" >&2; exit 1; }
cmake --build "$build" -j2 --target dictionary_samples > /dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/train" "$work/held-out"
export AQUEDUCT_SOURCE_DIR=$root
"$build/bench/dictionary_samples" "$work/train" 1 3000
"$build/bench/dictionary_samples" "$work/held-out" 2 300
zstd -q --train -r "$work/train" -o "$work/dict" --maxdict=32768 -6 --dictID=$DICT_ID
{
  echo "// Dictionary $DICT_ID for common/compress (included by compress.cc only): a"
  echo "// zstd dictionary trained by bench/dictionary/make.sh on values intake and"
  echo "// referral store. NEVER EDIT: values packed with it need these exact bytes."
  echo "// sha256 $(sha256sum "$work/dict" | cut -d' ' -f1)"
  xxd -i < "$work/dict"
} > "$OUT"
echo "wrote $OUT ($(stat -c %s "$work/dict") bytes of dictionary)"
echo "held-out values, average bytes: plain -> zstd level 6 with the dictionary"
for kind in r:result a:answers d:record c:case; do
  k=${kind%%:*}
  plain=0 packed=0 n=0
  for f in "$work/held-out/$k"-*; do
    plain=$((plain + $(stat -c %s "$f")))
    packed=$((packed + $(zstd -q -6 -D "$work/dict" --no-check --no-dictID -c "$f" | wc -c)))
    n=$((n + 1))
  done
  printf '  %-8s %5d -> %4d  (%d values)\n' "${kind#*:}" $((plain / n)) $((packed / n)) "$n"
done
