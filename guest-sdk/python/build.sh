#!/usr/bin/env bash
# Builds a Python operator into a Wasm component:
#   guest-sdk/python/build.sh transform|combiner OPERATOR_DIR OUT.wasm
# OPERATOR_DIR holds app.py (binding `Transform` or `Combiner`, see examples/); the SDK and
# the directory are on the module path. Needs componentize-py: scripts/install-guest-toolchains.sh python
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/guest-toolchains.env"
[[ $# -eq 3 && ( $1 == transform || $1 == combiner ) ]] || { echo "usage: $0 transform|combiner OPERATOR_DIR OUT.wasm" >&2; exit 2; }
spate_need python "$SPATE_PY/componentize-py"
mkdir -p "$(dirname "$3")"
# componentize-py needs the world's name: the export class name follows from it.
"$SPATE_PY/componentize-py" -d "$SPATE_REPO/wit" -w "$1-operator" componentize \
    -p "$here" -p "$2" app -o "$3"
