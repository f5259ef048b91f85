//! Boundary micro-benchmarks: the cost of moving a partition through a Wasm operator.
//!
//! For partitions of 1 KB, 64 KB, 1 MB and 16 MB of corpus lines, tokenizing into (word, 1):
//! - `native`: the same tokenizer compiled natively, writing the same columnar output;
//! - `columnar`: Spate's contract (one `process` call, columns of bytes + offsets);
//! - `records`: one call with a `list<record>` of nested `list<u8>` (a guest allocation per field);
//! - `per-record`: one call per line.
//!
//! Plus the fixed costs: an empty `process` call, and instantiation (+ configure) from the
//! linked component. Run: `cargo bench -p spate-bench --bench boundary`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spate::wasm::{
    ComponentCache, EngineSettings, Grants, GuestOutput, Limits, OperatorHost, OperatorInstance,
    OperatorKind, OperatorSpec, PluginOrigin, PreparedOperator, TransformInstance, new_linker,
    new_store,
};
use spate_bench::corpus::Corpus;
use spate_guest::{Column, Partition, PartitionBuilder};
use spate_plugin_tokenize::Tokenizer;
use std::time::Duration;

mod alternatives {
    wasmtime::component::bindgen!({ path: "wit", world: "boundary" });
}
use alternatives::Boundary;
use alternatives::exports::spate_bench::boundary::alternatives::Kv;

const SIZES: [(&str, usize); 4] = [
    ("1KB", 1 << 10),
    ("64KB", 64 << 10),
    ("1MB", 1 << 20),
    ("16MB", 16 << 20),
];

fn lines(bytes: usize) -> Column {
    let text = Corpus::new(7).text(bytes);
    let text = &text[..bytes.min(text.len())];
    let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Column::from_values(text[..end].split(|&b| b == b'\n').filter(|l| !l.is_empty()))
}

fn native_tokenize(input: &Partition) -> Partition {
    let tokenizer = Tokenizer::default();
    let mut scratch = Vec::new();
    let mut out = PartitionBuilder::with_capacity(input.len(), input.values.data.len());
    for record in input.records() {
        tokenizer
            .for_each_word(record.value, &mut scratch, |w| out.emit(w, &1i64))
            .expect("UTF-8");
    }
    out.finish()
}

/// The tokenize operator with the default limits (so the figures include their cost).
fn tokenize_operator() -> (PreparedOperator, wasmtime::Engine) {
    let host = OperatorHost::new(&EngineSettings {
        max_instances: 64,
        ..EngineSettings::default()
    })
    .expect("engine");
    let spec = OperatorSpec {
        name: "tokenize".into(),
        step: 0,
        kind: OperatorKind::Transform,
        plugin: PluginOrigin::Bundled("tokenize"),
        params: Vec::new(),
        output_combine: None,
        limits: Limits::default(),
        grants: Grants::default(),
    };
    let op = PreparedOperator::prepare(&host, &ComponentCache::disabled(), spec).expect("tokenize");
    (op, host.engine().clone())
}

fn transform(op: &PreparedOperator) -> TransformInstance {
    match OperatorInstance::new(op).expect("instance") {
        OperatorInstance::Transform(t) => t,
        _ => unreachable!("tokenize is a transform"),
    }
}

fn boundary(c: &mut Criterion) {
    let (op, engine) = tokenize_operator();
    let mut columnar = transform(&op);
    let linker = new_linker(&engine).expect("linker");
    let path = spate_test_artifacts::plugin("boundary");
    let component =
        wasmtime::component::Component::from_file(&engine, &path).expect("boundary.wasm");
    let pre = alternatives::BoundaryPre::new(linker.instantiate_pre(&component).expect("link"))
        .expect("pre");
    // Not scheduled with other tenants' calls (no CPU share): the benchmark measures the
    // boundary alone.
    let mut store = new_store(
        &engine,
        &GuestOutput::default(),
        (&Grants::default(), &Limits::default()),
        None,
    )
    .expect("store");
    // The alternatives are called directly, not through Spate's call wrapper, which gives each
    // call its deadline: give the whole benchmark one (ticks are 10 ms: a day).
    store.set_epoch_deadline(8_640_000);
    let alt: Boundary = pre.instantiate(&mut store).expect("instantiate");

    let mut group = c.benchmark_group("partition");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, bytes) in SIZES {
        let input = Partition {
            keys: None,
            values: lines(bytes),
            timestamps: Vec::new(),
        };
        let records: Vec<Kv> = input
            .values
            .iter()
            .map(|l| Kv {
                key: None,
                value: l.to_vec(),
            })
            .collect();
        group.throughput(Throughput::Bytes(input.values.data.len() as u64));
        group.bench_with_input(BenchmarkId::new("native", label), &input, |b, input| {
            b.iter(|| native_tokenize(input))
        });
        group.bench_with_input(BenchmarkId::new("columnar", label), &input, |b, input| {
            let mut lent = input.clone();
            b.iter(|| columnar.process(&mut lent).expect("process"))
        });
        if bytes > 1 << 20 {
            // wasmtime refuses to lift ~4 M nested records in one call (HostcallFuelExhausted),
            // and one call per record at this size only repeats the 1 MB figure: stop here.
            continue;
        }
        group.bench_with_input(
            BenchmarkId::new("records", label),
            &records,
            |b, records| {
                b.iter(|| {
                    alt.spate_bench_boundary_alternatives()
                        .call_tokenize_records(&mut store, records)
                        .expect("call")
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("per-record", label), &input, |b, input| {
            b.iter(|| {
                let mut n = 0;
                for line in input.values.iter() {
                    n += alt
                        .spate_bench_boundary_alternatives()
                        .call_tokenize_one(&mut store, line)
                        .expect("call")
                        .len();
                }
                n
            })
        });
    }
    group.finish();

    let mut fixed = c.benchmark_group("fixed");
    fixed
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    fixed.bench_function("empty-process-call", |b| {
        b.iter(|| {
            columnar
                .process(&mut Partition::default())
                .expect("process")
        })
    });
    fixed.bench_function("instantiate-and-configure", |b| {
        b.iter(|| OperatorInstance::new(&op).expect("instance"))
    });
    fixed.finish();
}

criterion_group!(benches, boundary);
criterion_main!(benches);
