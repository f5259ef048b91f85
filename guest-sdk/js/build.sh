#!/usr/bin/env bash
# Builds a JavaScript operator into a Wasm component:
#   guest-sdk/js/build.sh transform|combiner APP.js OUT.wasm
# APP.js exports `transform` or `combiner` (see examples/). Every WASI feature of the engine is
# disabled (Spate grants none): the component imports nothing but Spate's types, and console
# output goes nowhere. SPATE_JS_STDIO=1 keeps stdio: console.log/console.error then reach
# Spate's log (the component imports wasi:cli's streams, which Spate provides).
# Needs componentize-js: scripts/install-guest-toolchains.sh js
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/guest-toolchains.env"
[[ $# -eq 3 && ( $1 == transform || $1 == combiner ) ]] || { echo "usage: $0 transform|combiner APP.js OUT.wasm" >&2; exit 2; }
spate_need js "$SPATE_JS_BIN/componentize-js"
mkdir -p "$(dirname "$3")"
"$SPATE_JS_BIN/componentize-js" "$2" --wit "$SPATE_REPO/wit" -n "$1-operator" \
    -d $([[ ${SPATE_JS_STDIO:-} == 1 ]] || echo stdio) random clocks http fetch-event -o "$3"
