#!/usr/bin/env bash
# Rebuilds engine/wasm/kernels.wasm from engine/wasm/kernels.c with clang-14 + wasm-ld-14, and
# records the sha256 of the sources and of the artifact in engine/wasm/kernels.source.sha256
# (test/engine/wasm-artifact.test.ts checks both). The output is byte-stable: no debug info, no
# name / producers sections, fixed memory and stack sizes. Usage: build-wasm.sh [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=engine/wasm/kernels.c
OUT_DIR=${1:-engine/wasm}
CC=${CLANG:-clang-14}
mkdir -p "$OUT_DIR"

# -mmutable-globals lets __stack_pointer be exported, so each instance (one per thread) can be
# given its own stack region. The stack is small because kernels must not use it (checked below).
CFLAGS=(--target=wasm32 -O3 -msimd128 -mmutable-globals -matomics -mbulk-memory -ffreestanding
  -nostdlib -g0 -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--no-entry -Wl,--export-dynamic -Wl,--import-memory -Wl,--shared-memory
  -Wl,--max-memory=4294967296 -Wl,--initial-memory=131072 -Wl,-z,stack-size=16384
  -Wl,--export=__heap_base -Wl,--export=__stack_pointer -Wl,--strip-all)

if ! command -v "$CC" >/dev/null || ! command -v wasm-ld-14 >/dev/null; then
  echo "build-wasm: needs clang-14 and wasm-ld-14 (Debian: apt-get install clang-14 lld-14)" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Kernels run on several threads over one shared memory with one shadow stack per instance at
# most; a kernel that spills to the stack is a bug (see shared/research/executor-probe.md §4).
"$CC" "${CFLAGS[@]}" -S -o "$TMP/kernels.s" "$SRC"
if grep -Eq "global\.(get|set)[[:space:]]+__stack_pointer" "$TMP/kernels.s"; then
  echo "build-wasm: a kernel uses the shadow stack (grep __stack_pointer in clang -S output)" >&2
  exit 1
fi

# The linker by its versioned name: no unversioned wasm-ld needs to be on PATH.
"$CC" "${CFLAGS[@]}" -fuse-ld="$(command -v wasm-ld-14)" "${LDFLAGS[@]}" -o "$TMP/kernels.wasm" "$SRC"

cp "$TMP/kernels.wasm" "$OUT_DIR/kernels.wasm"
{
  echo "source $(cat "$SRC" scripts/build-wasm.sh | sha256sum | cut -d' ' -f1)"
  echo "wasm $(sha256sum < "$OUT_DIR/kernels.wasm" | cut -d' ' -f1)"
} > "$OUT_DIR/kernels.source.sha256"
echo "build-wasm: wrote $OUT_DIR/kernels.wasm ($(wc -c < "$OUT_DIR/kernels.wasm") bytes)"
