#!/usr/bin/env bash
# Rough throughput of each language's tokenize relative to the Rust plugin's:
#   scripts/bench-guest-tokenize.sh INPUT_DIR [ROUNDS] [python] [js] [c]
# Pipeline: flat-map tokenize {lowercase, strip-punctuation} -> reduce-by-key with the bundled
# Rust sum (so only the tokenize differs), trigger available-now, WORKERS workers (default 1),
# text-files output. One untimed run per plugin first (compiles it into Spate's cache), then
# ROUNDS (default 3) interleaved timed rounds. Prints the median wall time of `spate run`
# (process start to exit) and the median time spent in Wasm (the run summary's "ms in Wasm",
# tokenize and sum calls), and each one's ratio to Rust's (Rust time / language time: 1.0 is as
# fast as Rust, 0.1 ten times slower). SPATE names the spate binary. PIPELINE=records measures
# flat-map tokenize {lowercase} -> count-by-value instead: no pre-combining, one output record
# per word crosses the boundary.
set -euo pipefail
source "$(dirname "$0")/guest-toolchains.env"
input=$(cd "$1" && pwd)
rounds=${2:-3}
shift 2 || shift $#
langs=("$@")
[[ ${#langs[@]} -eq 0 ]] && langs=(python js c)
spate=${SPATE:-$SPATE_REPO/target/release/spate}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plugins=(rust "${langs[@]}")
step2='params = { lowercase = true, strip-punctuation = true }
[[steps]]
op = "reduce-by-key"
plugin = "sum"'
[[ ${PIPELINE:-} == records ]] && step2='params = { lowercase = true }
[[steps]]
op = "count-by-value"'
for p in "${plugins[@]}"; do
    plugin='"tokenize"'
    [[ $p != rust ]] && plugin="\"$SPATE_REPO/target/guest-examples/$p-tokenize.wasm\""
    cat >"$work/$p.toml" <<TOML
[job]
trigger = "available-now"
workers = ${WORKERS:-1}
[sources.lines]
type = "directory"
path = "$input"
[[steps]]
op = "flat-map"
plugin = $plugin
$step2
[[outputs]]
type = "text-files"
prefix = "$work/out/$p"
suffix = "txt"
TOML
done
once() { # once PLUGIN -> "wall_seconds wasm_seconds"
    rm -rf "$work/out"
    local start end wasm
    start=$(date +%s.%N)
    "$spate" run "$work/$1.toml" >"$work/$1.log" 2>&1 || { tail -5 "$work/$1.log" >&2; exit 1; }
    end=$(date +%s.%N)
    wasm=$(grep -E '^  wasm: ' "$work/$1.log" | tail -1 | sed -E 's/.* ([0-9.]+) ms in Wasm.*/\1/')
    echo "$(echo "$end - $start" | bc) $(echo "$wasm / 1000" | bc -l)"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for p in "${plugins[@]}"; do
    first=$(once "$p")
    echo "$p: first run (compiles the plugin) ${first%% *}s" >&2
done
declare -A walls wasms
for ((r = 1; r <= rounds; r++)); do
    for p in "${plugins[@]}"; do
        read -r wall wasm < <(once "$p")
        walls[$p]+="$wall "
        wasms[$p]+="$wasm "
    done
done
rust_wall=$(echo "${walls[rust]}" | tr ' ' '\n' | grep . | median)
rust_wasm=$(echo "${wasms[rust]}" | tr ' ' '\n' | grep . | median)
printf '%-7s %10s %8s %12s %8s\n' plugin "wall (s)" ratio "in Wasm (s)" ratio
for p in "${plugins[@]}"; do
    wall=$(echo "${walls[$p]}" | tr ' ' '\n' | grep . | median)
    wasm=$(echo "${wasms[$p]}" | tr ' ' '\n' | grep . | median)
    printf '%-7s %10.2f %8.3f %12.2f %8.3f\n' "$p" "$wall" "$(echo "$rust_wall / $wall" | bc -l)" "$wasm" "$(echo "$rust_wasm / $wasm" | bc -l)"
done
