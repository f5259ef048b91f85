#!/usr/bin/env bash
# Builds the tokenize and sum examples of every guest SDK (or of the languages named) into
# target/guest-examples/<lang>-<op>.wasm:
#   scripts/build-guest-examples.sh [python] [js] [c] [js-quickjs]
# (default: python js c; js-quickjs is the JavaScript SDK built with componentize-qjs)
set -euo pipefail
source "$(dirname "$0")/guest-toolchains.env"
langs=("$@")
[[ ${#langs[@]} -eq 0 ]] && langs=(python js c)
out="$SPATE_REPO/target/guest-examples"
sdk="$SPATE_REPO/guest-sdk"
for lang in "${langs[@]}"; do
    for op in tokenize sum; do
        kind=transform
        [[ $op == sum ]] && kind=combiner
        case "$lang" in
        python) "$sdk/python/build.sh" "$kind" "$sdk/python/examples/$op" "$out/python-$op.wasm" ;;
        js) "$sdk/js/build.sh" "$kind" "$sdk/js/examples/$op/app.js" "$out/js-$op.wasm" ;;
        js-quickjs) SPATE_JS_ENGINE=quickjs "$sdk/js/build.sh" "$kind" "$sdk/js/examples/$op/app.js" "$out/js-quickjs-$op.wasm" >/dev/null ;;
        c) "$sdk/c/build.sh" "$kind" "$sdk/c/examples/$op/$op.c" "$out/c-$op.wasm" ;;
        *) echo "unknown language '$lang' (python, js, c or js-quickjs)" >&2; exit 2 ;;
        esac
        echo "built $out/$lang-$op.wasm ($(stat -c %s "$out/$lang-$op.wasm") bytes)"
    done
done
