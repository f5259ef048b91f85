#!/usr/bin/env bash
# Builds the operator into {{wasm}} with componentize-js (SpiderMonkey inside the component).
# Needs the JavaScript toolchain: {{tree}}/scripts/install-guest-toolchains.sh js
set -euo pipefail
cd "$(dirname "$0")"
exec "{{sdk}}/build.sh" transform app.js {{wasm}}
