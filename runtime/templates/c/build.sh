#!/usr/bin/env bash
# Builds the operator into {{wasm}} with clang for wasm32-wasi and the Rust toolchain's
# wasm-component-ld. Needs the C toolchain: {{tree}}/scripts/install-guest-toolchains.sh c
set -euo pipefail
cd "$(dirname "$0")"
exec "{{sdk}}/build.sh" transform operator.c {{wasm}}
