# Thin wrappers over cargo; nothing here is needed for the README's two commands.
# Install just with `cargo install just` if you like short names.

# Word count over the bundled demo text, printed every second.
demo:
    cargo run --release -- demo

# Every test: unit, guest SDK, plugins (natively) and end-to-end.
test:
    cargo test --release

# Validate a pipeline and print its plan, e.g. `just check examples/socket-wordcount.toml`.
check pipeline:
    cargo run --release -- check {{pipeline}}

# Run a pipeline, e.g. `just run examples/file-wordcount.toml`.
run pipeline *args:
    cargo run --release -- run {{pipeline}} {{args}}

# What CI runs.
ci:
    .ci/run

# Format and lint.
lint:
    cargo fmt --all
    cargo clippy --release --all-targets -- -D warnings

# The benchmark suite: one table plus target/bench-results.json (docs/BENCHMARKS.md).
bench:
    bench/run

# The same with a 20 MB corpus and shorter runs.
bench-quick:
    bench/run --quick

# Each guest language's tokenize against Rust's (docs/OPERATORS.md, "Operators in other languages").
bench-guest *args:
    bench/guest-languages {{args}}

# The chaos tests of docs/FAULT-TOLERANCE.md with many more kills than CI's 20 (`just chaos 500`).
chaos kills="200":
    SPATE_CHAOS_KILLS={{kills}} cargo test --release --test recovery killed
