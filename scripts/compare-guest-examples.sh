#!/usr/bin/env bash
# Runs the guest examples (target/guest-examples, see build-guest-examples.sh) in real Spate
# pipelines and compares their output with the bundled Rust plugins' on the same input:
#   scripts/compare-guest-examples.sh INPUT_DIR [python] [js] [c]
# For each language and each of these pipelines over the text files of INPUT_DIR
# (trigger available-now, one worker, output to text-files):
#   wordcount: flat-map tokenize {lowercase, strip-punctuation} -> reduce-by-key sum
#              (the language's tokenize and sum; tokenize pre-combines, sum folds after the shuffle)
#   plain:     flat-map tokenize {} -> reduce-by-key sum (bundled Rust sum)
#   records:   flat-map tokenize {lowercase} -> count-by-value (no pre-combining: one record
#              per word crosses the boundary)
# the output must equal the Rust pipeline's. How the input is cut into batches depends on timing
# (a run may make one batch of a file, the next two), so the comparison adds up each key's
# counts over every batch of the text-files output (what one reduce over the whole input would
# give), then compares the sorted totals; whether the raw sorted outputs were identical too is
# printed as well. Prints one line per run with its wall time; exits non-zero on any
# difference. SPATE names the spate binary (default target/release/spate); KEEP=1 keeps the
# work directory (pipelines, logs, outputs).
set -euo pipefail
source "$(dirname "$0")/guest-toolchains.env"
input=$(cd "$1" && pwd)
shift
langs=("$@")
[[ ${#langs[@]} -eq 0 ]] && langs=(python js c)
spate=${SPATE:-$SPATE_REPO/target/release/spate}
examples="$SPATE_REPO/target/guest-examples"
work=$(mktemp -d)
[[ -n "${KEEP:-}" ]] && echo "work directory: $work" >&2 || trap 'rm -rf "$work"' EXIT

pipeline() { # pipeline NAME TOKENIZE PARAMS STEP2
    cat >"$work/$1.toml" <<TOML
[job]
trigger = "available-now"
workers = 1
max-batch-bytes = "128 MiB"
max-buffered-bytes = "512 MiB"
[sources.lines]
type = "directory"
path = "$input"
[[steps]]
op = "flat-map"
plugin = $2
params = $3
$4
[[outputs]]
type = "text-files"
prefix = "$work/out/$1"
suffix = "txt"
TOML
}

run() { # run NAME -> sorted output in $work/NAME.sorted, prints the time
    local start end
    start=$(date +%s.%N)
    if ! "$spate" run "$work/$1.toml" >"$work/$1.log" 2>&1; then
        echo "$1: spate run failed:" >&2
        tail -5 "$work/$1.log" >&2
        return 1
    fi
    end=$(date +%s.%N)
    cat "$work/out/$1"-*/part-* | LC_ALL=C sort >"$work/$1.sorted"
    # Lines end with ",<count>)": add up the counts of each key over the batches.
    LC_ALL=C awk '{ i = match($0, /,-?[0-9]+\)$/); s[substr($0, 1, i - 1)] += substr($0, i + 1, RLENGTH - 2) }
        END { for (k in s) printf "%s,%d)\n", k, s[k] }' "$work/$1.sorted" | LC_ALL=C sort >"$work/$1.totals"
    printf '%.2f' "$(echo "$end - $start" | bc)"
}

status=0
for variant in wordcount plain records; do
    case $variant in
    wordcount) params='{ lowercase = true, strip-punctuation = true }' ;;
    plain) params='{}' ;;
    records) params='{ lowercase = true }' ;;
    esac
    step2_rust='[[steps]]
op = "reduce-by-key"
plugin = "sum"'
    [[ $variant == records ]] && step2_rust='[[steps]]
op = "count-by-value"'
    pipeline "rust-$variant" '"tokenize"' "$params" "$step2_rust"
    t=$(run "rust-$variant")
    echo "rust   $variant: $(wc -l <"$work/rust-$variant.totals") keys, ${t}s"
    for lang in "${langs[@]}"; do
        step2=$step2_rust
        [[ $variant == wordcount ]] && step2="[[steps]]
op = \"reduce-by-key\"
plugin = \"$examples/$lang-sum.wasm\""
        pipeline "$lang-$variant" "\"$examples/$lang-tokenize.wasm\"" "$params" "$step2"
        t=$(run "$lang-$variant") || { status=1; continue; }
        raw="raw outputs identical"
        cmp -s "$work/rust-$variant.sorted" "$work/$lang-$variant.sorted" || raw="raw outputs batched differently"
        if cmp -s "$work/rust-$variant.totals" "$work/$lang-$variant.totals"; then
            echo "$lang $variant: same totals as rust ($raw), ${t}s"
        else
            echo "$lang $variant: DIFFERENT totals ($(diff -a "$work/rust-$variant.totals" "$work/$lang-$variant.totals" | grep -c '^[<>]') lines differ), ${t}s"
            status=1
        fi
    done
done
exit $status
