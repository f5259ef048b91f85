#!/usr/bin/env bash
# Builds the operator into {{wasm}} with componentize-py (CPython inside the component).
# Needs the Python toolchain: {{tree}}/scripts/install-guest-toolchains.sh python
set -euo pipefail
cd "$(dirname "$0")"
exec "{{sdk}}/build.sh" transform . {{wasm}}
