#!/usr/bin/env bash
# Builds a C operator into a Wasm component:
#   guest-sdk/c/build.sh transform|combiner OPERATOR.c [MORE.c ...] OUT.wasm
# Steps: wit-bindgen c generates the world's bindings from wit/; clang-19 compiles them, the SDK
# and the operator for wasm32-wasi (WASI preview 1, Debian's wasi-libc) as a reactor module;
# wasm-tools component new makes the component, adapting the preview 1 imports wasi-libc's
# stdio brings in (fd_write, fd_seek, fd_close) to WASI p2 with wasmtime's adapter.
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
spate_need c "$SPATE_CARGO_BIN/wit-bindgen"
spate_need c "$SPATE_CARGO_BIN/wasm-tools"
spate_need c "$SPATE_WASI_ADAPTER"
[[ -f /usr/lib/wasm32-wasi/libc.a ]] || { echo "error: wasi-libc is missing: run scripts/install-guest-toolchains.sh c" >&2; exit 1; }
world="$kind-operator"
cworld="${kind}_operator"
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
"$SPATE_CARGO_BIN/wit-bindgen" c "$SPATE_REPO/wit" -w "$world" --out-dir "$gen" >/dev/null 2>&1 ||
    "$SPATE_CARGO_BIN/wit-bindgen" c "$SPATE_REPO/wit" -w "$world" --out-dir "$gen"
# shellcheck disable=SC2086
clang-19 --target=wasm32-wasi -mexec-model=reactor ${CFLAGS:--O2} -Wall -Wextra \
    -I "$here" -I "$gen" \
    "$here/spate_guest.c" "$here/spate_export_$kind.c" \
    "$gen/$cworld.c" "$gen/${cworld}_component_type.o" \
    "${sources[@]}" -o "$gen/core.wasm"
mkdir -p "$(dirname "$out")"
"$SPATE_CARGO_BIN/wasm-tools" component new "$gen/core.wasm" \
    --adapt "wasi_snapshot_preview1=$SPATE_WASI_ADAPTER" -o "$out"
