#!/usr/bin/env bash
# Builds a JavaScript operator into a Wasm component:
#   guest-sdk/js/build.sh transform|combiner APP.js OUT.wasm
# APP.js exports `transform` or `combiner` (see examples/). Every WASI feature of the engine is
# disabled (Spate grants none): the component imports nothing but Spate's types, and console
# output goes nowhere. SPATE_JS_STDIO=1 keeps stdio: console.log/console.error then reach
# Spate's log (the component imports wasi:cli's streams, which Spate provides).
# SPATE_JS_ENGINE=quickjs builds with componentize-qjs (QuickJS, a 2 MB component instead of
# 12 MB; WASI imports stubbed with traps, the synchronous ABI) instead of componentize-js
# (StarlingMonkey: SpiderMonkey).
# Needs componentize-js: scripts/install-guest-toolchains.sh js
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/guest-toolchains.env"
[[ $# -eq 3 && ( $1 == transform || $1 == combiner ) ]] || { echo "usage: $0 transform|combiner APP.js OUT.wasm" >&2; exit 2; }
spate_need js "$SPATE_JS_BIN/componentize-js"
mkdir -p "$(dirname "$3")"
if [[ ${SPATE_JS_ENGINE:-starlingmonkey} == quickjs ]]; then
    spate_need js "$SPATE_JS_BIN/componentize-qjs"
    # Module imports resolve under --module-root: the SDK directory (examples import ../../spate-guest.js).
    exec "$SPATE_JS_BIN/componentize-qjs" --wit "$SPATE_REPO/wit" -n "$1-operator" --js "$2" \
        --module-root "${SPATE_JS_MODULE_ROOT:-$here}" --sync --stub-wasi -o "$3"
fi
"$SPATE_JS_BIN/componentize-js" "$2" --wit "$SPATE_REPO/wit" -n "$1-operator" \
    -d $([[ ${SPATE_JS_STDIO:-} == 1 ]] || echo stdio) random clocks http fetch-event -o "$3"
