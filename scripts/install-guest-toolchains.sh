#!/usr/bin/env bash
# Installs the pinned toolchains that build Spate operators in other languages than Rust:
#   scripts/install-guest-toolchains.sh [python] [js] [c]      (no argument: all three)
# Idempotent: what is installed at the pinned version is left alone. Versions are in
# scripts/guest-toolchains.env (and guest-sdk/js/package-lock.json for JavaScript).
#   python: a venv with componentize-py (needs python3 with venv)
#   js:     npm ci in guest-sdk/js (componentize-js; needs node >= 20 and npm)
#   c:      apt-get install clang-19, lld-19, the wasm32 compiler-rt and wasi-libc (as root);
#           cargo install wit-bindgen-cli and wasm-tools (one at a time, -j 1: slow, ~15 min
#           on 2 cores); the WASI preview 1 adapter from crates.io
set -euo pipefail
source "$(dirname "$0")/guest-toolchains.env"
langs=("$@")
[[ ${#langs[@]} -eq 0 ]] && langs=(python js c)
mkdir -p "$SPATE_GUEST_TOOLS"

install_python() {
    if [[ -x "$SPATE_PY/componentize-py" ]] &&
        [[ "$("$SPATE_PY/componentize-py" --version)" == "componentize-py $COMPONENTIZE_PY_VERSION" ]]; then
        echo "python: componentize-py $COMPONENTIZE_PY_VERSION already installed"
        return
    fi
    python3 -m venv "$SPATE_GUEST_TOOLS/py"
    "$SPATE_PY/pip" install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION"
    echo "python: installed $("$SPATE_PY/componentize-py" --version)"
}

install_js() {
    local js="$SPATE_REPO/guest-sdk/js"
    if [[ -x "$SPATE_JS_BIN/componentize-js" ]] && cmp -s "$js/package-lock.json" "$js/node_modules/.package-lock.json.spate" 2>/dev/null; then
        echo "js: componentize-js $("$SPATE_JS_BIN/componentize-js" --version) already installed"
        return
    fi
    (cd "$js" && npm ci --no-audit --no-fund)
    cp "$js/package-lock.json" "$js/node_modules/.package-lock.json.spate"
    echo "js: installed componentize-js $("$SPATE_JS_BIN/componentize-js" --version)"
}

cargo_tool() { # cargo_tool CRATE VERSION BINARY
    if [[ -x "$SPATE_CARGO_BIN/$3" ]] && "$SPATE_CARGO_BIN/$3" --version | grep -qF "$2"; then
        echo "c: $1 $2 already installed"
        return
    fi
    cargo install --locked -j 1 --root "$SPATE_GUEST_TOOLS/cargo" "$1@$2"
}

install_c() {
    local pkgs=("clang-19=$CLANG_DEB_VERSION" "lld-19=$CLANG_DEB_VERSION"
        "libclang-rt-19-dev-wasm32=$CLANG_DEB_VERSION" "wasi-libc=$WASI_LIBC_DEB_VERSION")
    local missing=()
    for p in "${pkgs[@]}"; do
        [[ "$(dpkg-query -W -f='${Version}' "${p%%=*}" 2>/dev/null)" == "${p#*=}" ]] || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        local sudo=""
        [[ $(id -u) -ne 0 ]] && sudo=sudo
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "c: clang-19, lld-19, wasm32 compiler-rt and wasi-libc already installed"
    fi
    cargo_tool wit-bindgen-cli "$WIT_BINDGEN_CLI_VERSION" wit-bindgen
    cargo_tool wasm-tools "$WASM_TOOLS_VERSION" wasm-tools
    if [[ ! -f "$SPATE_WASI_ADAPTER" ]]; then
        # The adapter ships inside a crates.io crate: fetch it with cargo, copy the file out.
        local tmp
        tmp=$(mktemp -d)
        mkdir -p "$tmp/src"
        printf '[package]\nname = "fetch-adapter"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nwasi-preview1-component-adapter-provider = "=%s"\n' \
            "$WASI_ADAPTER_VERSION" >"$tmp/Cargo.toml"
        touch "$tmp/src/lib.rs"
        (cd "$tmp" && cargo fetch --quiet)
        local crate
        crate=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "wasi-preview1-component-adapter-provider-$WASI_ADAPTER_VERSION.crate" | head -1)
        tar -xzf "$crate" -C "$tmp" --wildcards '*/artefacts/wasi_snapshot_preview1.reactor.wasm'
        cp "$tmp"/wasi-preview1-component-adapter-provider-*/artefacts/wasi_snapshot_preview1.reactor.wasm "$SPATE_WASI_ADAPTER"
        rm -rf "$tmp"
        echo "c: fetched the WASI preview 1 adapter $WASI_ADAPTER_VERSION"
    else
        echo "c: WASI preview 1 adapter already fetched"
    fi
}

for lang in "${langs[@]}"; do
    case "$lang" in
    python) install_python ;;
    js) install_js ;;
    c) install_c ;;
    *)
        echo "unknown language '$lang' (python, js or c)" >&2
        exit 2
        ;;
    esac
done
