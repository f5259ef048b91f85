#!/usr/bin/env bash
# Regenerates the C SDK's committed wit-bindgen bindings (guest-sdk/c/bindings/) from wit/,
# after a change to the WIT contract. Only this script needs wit-bindgen-cli (a 10-minute
# `cargo install`, pinned in guest-toolchains.env): building C operators uses the committed
# output, and guest-sdk/c/build.sh refuses bindings made from another wit/ (WIT-SHA256).
set -euo pipefail
source "$(dirname "$0")/guest-toolchains.env"
bin="$SPATE_GUEST_TOOLS/cargo/bin/wit-bindgen"
if ! [[ -x "$bin" ]] || ! "$bin" --version | grep -qF "$WIT_BINDGEN_CLI_VERSION"; then
    cargo install --locked --root "$SPATE_GUEST_TOOLS/cargo" "wit-bindgen-cli@$WIT_BINDGEN_CLI_VERSION"
fi
out="$SPATE_REPO/guest-sdk/c/bindings"
rm -rf "$out"
mkdir -p "$out"
for world in transform-operator combiner-operator; do
    "$bin" c "$SPATE_REPO/wit" -w "$world" --out-dir "$out" >/dev/null
done
spate_wit_sha256 >"$out/WIT-SHA256"
echo "regenerated $out from wit/ ($(cat "$out/WIT-SHA256"))"
