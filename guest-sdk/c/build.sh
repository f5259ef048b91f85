#!/usr/bin/env bash
# Builds a C operator into a Wasm component:
#   guest-sdk/c/build.sh transform|combiner OPERATOR.c [MORE.c ...] OUT.wasm
# clang-19 compiles the SDK, the world's wit-bindgen bindings (committed in bindings/, made by
# scripts/regenerate-c-bindings.sh) and the operator for wasm32-wasi (WASI preview 1, Debian's
# wasi-libc) as a reactor module, and links with the pinned Rust toolchain's wasm-component-ld,
# which makes the component and adapts the preview 1 imports wasi-libc's stdio brings in
# (fd_write, fd_seek, fd_close) to WASI p2 with wasmtime's adapter.
# CFLAGS overrides the optimization flags (default -O2).
# Needs the C toolchain: scripts/install-guest-toolchains.sh c
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/guest-toolchains.env"
if [[ $# -lt 3 || ! ( $1 == transform || $1 == combiner ) ]]; then
    echo "usage: $0 transform|combiner OPERATOR.c [MORE.c ...] OUT.wasm" >&2
    exit 2
fi
kind=$1
shift
out=${*: -1}
sources=("${@:1:$#-1}")
spate_need c clang-19
spate_need c /usr/lib/llvm-19/bin/wasm-ld
spate_need c /usr/lib/wasm32-wasi/libc.a
linker=$(spate_wasm_component_ld)
[[ -x "$linker" ]] || { echo "error: $linker is missing: run \`rustup target add wasm32-wasip2\` in $SPATE_REPO" >&2; exit 1; }
if [[ "$(cat "$here/bindings/WIT-SHA256")" != "$(spate_wit_sha256)" ]]; then
    echo "error: guest-sdk/c/bindings was generated from another wit/: run scripts/regenerate-c-bindings.sh" >&2
    exit 1
fi
cworld="${kind}_operator"
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2086
clang-19 --target=wasm32-wasi -mexec-model=reactor ${CFLAGS:--O2} -Wall -Wextra \
    -I "$here" -I "$here/bindings" \
    "$here/spate_guest.c" "$here/spate_export_$kind.c" \
    "$here/bindings/$cworld.c" "$here/bindings/${cworld}_component_type.o" \
    "${sources[@]}" -fuse-ld="$linker" -o "$out"
