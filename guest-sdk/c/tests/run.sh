#!/usr/bin/env bash
# Builds and runs the C SDK's native tests with the host C compiler (CC overrides; default cc),
# with AddressSanitizer and UndefinedBehaviorSanitizer when the compiler has them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build() {
    "$cc" -g -O1 "$@" -Wall -Wextra -I "$here" \
        "$here/tests/test_spate_guest.c" "$here/spate_guest.c" "$here/spate_testing.c" \
        "$here/examples/tokenize/tokenize.c" "$here/examples/sum/sum.c" -o "$out/test"
}
build -fsanitize=address,undefined -fno-omit-frame-pointer 2>/dev/null || build
# Operator state lives as long as its instance (never freed, like the Rust SDK's): no leak checks.
ASAN_OPTIONS=detect_leaks=0 "$out/test"
