#!/usr/bin/env bash
# Installs the pinned toolchains that build Spate operators in other languages than Rust:
#   scripts/install-guest-toolchains.sh [python] [js] [c]      (no argument: all three)
# Idempotent: what is installed at the pinned version is left alone. Versions are in
# scripts/guest-toolchains.env (and guest-sdk/js/package-lock.json for JavaScript).
#   python: a venv with componentize-py (needs python3 with venv)
#   js:     npm ci in guest-sdk/js (componentize-js; needs node >= 20 and npm)
#   c:      apt-get install clang-19, lld-19, the wasm32 compiler-rt and wasi-libc (as root, or
#           with sudo); the rest comes with the repository (the wit-bindgen bindings) and the
#           pinned Rust toolchain (wasm-component-ld)
set -euo pipefail
source "$(dirname "$0")/guest-toolchains.env"
langs=("$@")
[[ ${#langs[@]} -eq 0 ]] && langs=(python js c)
mkdir -p "$SPATE_GUEST_TOOLS"

install_python() {
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "error: python needs python3 (>= 3.10) with venv and ensurepip (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
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
    local js="$SPATE_REPO/guest-sdk/js" node_major
    node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
    if [[ -z "$node_major" || "$node_major" -lt 20 ]] || ! command -v npm >/dev/null; then
        echo "error: js needs Node.js >= 20 with npm (found: $(node --version 2>/dev/null || echo none)); install them, then rerun $0 js" >&2
        exit 1
    fi
    if [[ -x "$SPATE_JS_BIN/componentize-js" ]] && cmp -s "$js/package-lock.json" "$js/node_modules/.package-lock.json.spate" 2>/dev/null; then
        echo "js: componentize-js $("$SPATE_JS_BIN/componentize-js" --version) already installed"
        return
    fi
    (cd "$js" && npm ci --no-audit --no-fund)
    cp "$js/package-lock.json" "$js/node_modules/.package-lock.json.spate"
    echo "js: installed componentize-js $("$SPATE_JS_BIN/componentize-js" --version)"
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
