#!/usr/bin/env bash
# Builds and runs test.c natively with the host C compiler (CC overrides; default cc).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
"${CC:-cc}" -g -O1 -Wall -Wextra -I "{{sdk}}" test.c operator.c \
    "{{sdk}}/spate_guest.c" "{{sdk}}/spate_testing.c" -o build/test
build/test
