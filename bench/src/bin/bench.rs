//! The benchmark harness: `bench [--quick] [--json PATH] [--skip-ingest] [--only-wordcount]
//! [--only-sandbox] [--only-tenants] [--only-ingest] [--only-state] [--only-kafka] [--only-scale-out] [--only-postgres] [--only-ui]`; an unknown argument is refused
//! (exit 2).
//! Run it through `bench/run` (or `just bench`), which first builds spate and runs the
//! criterion benchmarks.

use anyhow::{Context, Result};
use spate_bench::corpus::Corpus;
use spate_bench::criterion_results::{self, Boundary};
use spate_bench::workloads::{
    ingest, kafka, postgres, sandbox, scale_out, startup, state, tenants, ui, wordcount,
};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(serde::Serialize)]
struct Results {
    machine: String,
    corpus_mb: f64,
    wordcount: Vec<wordcount::Wordcount>,
    startup: Option<startup::Startup>,
    ingest: Option<ingest::Ingest>,
    boundary: Option<Boundary>,
    sandbox: Option<sandbox::SandboxCost>,
    tenants: Option<tenants::Tenants>,
    state: Option<state::StateCost>,
    kafka: Option<kafka::KafkaFigures>,
    scale_out: Option<scale_out::ScaleOutFigures>,
    postgres: Option<postgres::PostgresFigures>,
    ui: Option<ui::UiCost>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

fn ensure_corpus(root: &Path, mb: usize) -> Result<PathBuf> {
    let dir = root.join(format!("bench/data/corpus-{mb}mb"));
    let path = dir.join("corpus.txt");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("generating the {mb} MB corpus in {}", path.display());
    let text = Corpus::new(42).text(mb * 1_000_000);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

const USAGE: &str = "usage: bench [--quick] [--json PATH] [--skip-ingest] [--only-wordcount] \
                     [--only-sandbox] [--only-tenants] [--only-ingest] [--only-state] [--only-kafka] \
                     [--only-scale-out] [--only-postgres] [--only-ui]";

/// The flags [`Selection::from_args`] and `main` read.
const FLAGS: [&str; 11] = [
    "--quick",
    "--skip-ingest",
    "--only-wordcount",
    "--only-sandbox",
    "--only-tenants",
    "--only-ingest",
    "--only-state",
    "--only-kafka",
    "--only-scale-out",
    "--only-postgres",
    "--only-ui",
];

/// Refuses an argument the harness does not know: ignored, it would run the whole suite
/// (about ten minutes) instead of what was asked for.
fn check_args(args: &[String]) -> std::result::Result<(), String> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => {
                args.next().ok_or("--json needs a file path after it")?;
            }
            flag if FLAGS.contains(&flag) => {}
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(())
}

/// Which workloads run.
struct Selection {
    wordcount: bool,
    sandbox: bool,
    ingest: bool,
    tenants: bool,
    boundary: bool,
    state: bool,
    kafka: bool,
    scale_out: bool,
    postgres: bool,
    ui: bool,
}

impl Selection {
    /// Everything, or only what `--only-<workload>` flags name (several may be given):
    /// `--only-wordcount` (workload 1, for quick iterations), `--only-sandbox` (limits cost,
    /// tenant isolation), `--only-tenants` (tenant isolation alone), `--only-ingest` (socket ingest, with and without the batch log),
    /// `--only-state` (keyed state, windows, checkpoints). `--skip-ingest` drops the longest.
    fn from_args(args: &[String]) -> Self {
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let only = [
            "--only-wordcount",
            "--only-sandbox",
            "--only-tenants",
            "--only-ingest",
            "--only-state",
            "--only-kafka",
            "--only-scale-out",
            "--only-postgres",
            "--only-ui",
        ];
        let all = !only.iter().any(|f| has(f));
        let sandbox = all || has("--only-sandbox");
        Selection {
            wordcount: all || has("--only-wordcount"),
            sandbox,
            ingest: (all || has("--only-ingest")) && !has("--skip-ingest"),
            tenants: sandbox || has("--only-tenants"),
            boundary: all || has("--only-sandbox"),
            state: all || has("--only-state"),
            kafka: all || has("--only-kafka"),
            scale_out: all || has("--only-scale-out"),
            postgres: all || has("--only-postgres"),
            ui: all || has("--only-ui"),
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let (check_only, args): (Vec<String>, Vec<String>) =
        args.into_iter().partition(|a| a == "--check-args");
    if let Err(problem) = check_args(&args) {
        eprintln!("bench: {problem}\n{USAGE}");
        std::process::exit(2);
    }
    if !check_only.is_empty() {
        // bench/run checks the arguments before the criterion benchmarks run.
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let run = Selection::from_args(&args);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    let target = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .context("target dir")?
        .to_owned();
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("bench-results.json"));
    let mb = if quick { 20 } else { 200 };
    let mb = std::env::var("SPATE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mb);
    let reps = 3;
    let work = target.join("bench-work");
    std::fs::create_dir_all(&work)?;
    let cache = work.join("cache");
    let corpus = ensure_corpus(&root, mb)?;

    let mut counts = Vec::new();
    for threads in [1, 2] {
        if !run.wordcount {
            break;
        }
        eprintln!("word count, {threads} thread(s), {reps} runs each of native and spate ...");
        counts.push(wordcount::run(&corpus, threads, reps, &cache, &work)?);
    }
    let (sandbox, startup) = if !run.sandbox {
        (None, None)
    } else {
        eprintln!("sandbox cost: limits off, default, with fuel ({reps} runs each) ...");
        let sandbox = sandbox::run(&corpus, reps, &cache, &work)?;
        let startup = startup::run(if run.wordcount { 5 } else { 1 }, &work)?;
        (Some(sandbox), Some(startup))
    };
    let (probe_s, steady_s) = if quick { (4, 10) } else { (10, 30) };
    let ingest = if !run.ingest {
        None
    } else {
        eprintln!("socket ingest (rate search, then steady runs) ...");
        Some(ingest::run(&corpus, probe_s, steady_s, &cache, &work)?)
    };
    // Half the sustainable rate: a tenant with room to spare, so that any slowdown is the
    // neighbour's doing.
    let tenant_rate = ingest
        .as_ref()
        .map_or(10e6, |i| i.max_sustained_mb_s * 0.5e6);
    let tenants = if !run.tenants {
        None
    } else {
        eprintln!("tenant isolation: word count alone, beside a CPU burner, among 8 tenants ...");
        Some(tenants::run(&corpus, tenant_rate, steady_s, &cache, &work)?)
    };
    // The criterion figures come from bench/run's earlier `cargo bench`, which a word-count-only
    // run skips.
    let boundary = run
        .boundary
        .then(|| criterion_results::boundary(&target.join("criterion")));
    let state = if !run.state {
        None
    } else {
        let (keys, batches) = if quick {
            (200_000, 10)
        } else {
            (1_000_000, 20)
        };
        eprintln!("keyed state and windows: {keys} keys in state, 10000 touched per batch ...");
        Some(state::run(keys, batches, &cache, &work)?)
    };
    let kafka = if !run.kafka {
        None
    } else {
        eprintln!(
            "kafka in and out: throughput against a plain consume + produce, then latency ..."
        );
        let bytes = if quick { 10_000_000 } else { 50_000_000 };
        Some(kafka::run(
            &root, &corpus, bytes, reps, steady_s, &cache, &work,
        )?)
    };
    let scale_out = if !run.scale_out {
        None
    } else {
        eprintln!(
            "scale-out: one process against two (pinned to their own cores), then a rebalance ..."
        );
        let bytes = if quick { 80_000_000 } else { 200_000_000 };
        Some(scale_out::run(&root, &corpus, bytes, &cache, &work)?)
    };
    let postgres = if !run.postgres {
        None
    } else {
        eprintln!("postgresql: append and upsert against COPY from a file ...");
        let bytes = if quick { 4_000_000 } else { 20_000_000 };
        Some(postgres::run(&corpus, bytes, reps, &cache, &work)?)
    };
    let ui = if !run.ui {
        None
    } else {
        eprintln!("web UI: the word count with the UI off, and on with a page open ...");
        Some(ui::run(&corpus, reps.max(5), &cache, &work)?)
    };
    let results = Results {
        machine: machine(),
        corpus_mb: mb as f64,
        wordcount: counts,
        startup,
        ingest,
        boundary,
        sandbox,
        tenants,
        state,
        kafka,
        scale_out,
        postgres,
        ui,
    };
    print_table(&results);
    let mut file = std::fs::File::create(&json_path)?;
    file.write_all(serde_json::to_string_pretty(&results)?.as_bytes())?;
    println!("\nJSON: {}", json_path.display());
    Ok(())
}

fn print_table(r: &Results) {
    println!(
        "Spate benchmarks ({}; corpus {} MB)",
        r.machine, r.corpus_mb
    );
    println!(
        "{:<46} {:>14} {:>14} {:>10}",
        "figure", "spate", "baseline", "ratio"
    );
    for w in &r.wordcount {
        let mbs = |s: f64| w.mb / s;
        let mwords = |s: f64| w.words as f64 / s / 1e6;
        println!(
            "{:<46} {:>9.1} MB/s {:>9.1} MB/s {:>9.2}x",
            format!("word count, {} thread(s), available-now", w.threads),
            mbs(w.spate_s),
            mbs(w.native_s),
            w.ratio
        );
        println!(
            "{:<46} {:>8.1} Mw/s {:>8.1} Mw/s",
            "  words per second",
            mwords(w.spate_s),
            mwords(w.native_s)
        );
        println!(
            "{:<46} {:>9.1} MB/s",
            "  inside batches only (processing time)",
            mbs(w.spate_processing_s)
        );
        println!(
            "{:<46} {:>12.1} MB {:>14}",
            "  peak RSS", w.spate_peak_rss_mb, "target <= 64"
        );
        println!(
            "{:<46} {:>12.2} s",
            "  time in Wasm (all workers)", w.spate_wasm_s
        );
        if let Some(operator_s) = w.native_operator_s {
            println!(
                "{:<46} {:>12.2} s {:>14} {:>9.2}x",
                "  the same operator natively (no Wasm)",
                w.spate_wasm_s,
                format!("{operator_s:.2} s"),
                operator_s / w.spate_wasm_s
            );
        }
    }
    if let Some(startup) = &r.startup {
        println!(
            "{:<46} {:>12.1} ms",
            "cold start to first batch, empty cache", startup.cold_cache_ms
        );
        println!(
            "{:<46} {:>12.1} ms {:>14}",
            "cold start to first batch, warm cache", startup.warm_cache_ms, "target <= 50"
        );
    }
    if let Some(i) = &r.ingest {
        println!(
            "{:<46} {:>9.1} MB/s",
            "socket ingest: highest sustained rate (1 s)", i.max_sustained_mb_s
        );
        let p = &i.at_80_percent;
        println!(
            "{:<46} {:>12.1} ms",
            "  at 80%: processing time p50", p.processing_p50_ms
        );
        println!(
            "{:<46} {:>12.1} ms",
            "  at 80%: processing time p99", p.processing_p99_ms
        );
        println!(
            "{:<46} {:>12.1} ms",
            "  at 80%: total delay p50", p.total_delay_p50_ms
        );
        println!(
            "{:<46} {:>12.1} ms {:>14} {:>9.2}x",
            "  at 80%: total delay p99",
            p.total_delay_p99_ms,
            "interval 1000",
            p.total_delay_p99_ms / 1000.0
        );
        let w = &i.at_80_percent_wal;
        println!(
            "{:<46} {:>12.1} ms {:>11.1} ms {:>9.2}x",
            "  at 80% with the batch log: total delay p99",
            w.total_delay_p99_ms,
            p.total_delay_p99_ms,
            i.wal_delay_ratio
        );
        println!(
            "{:<46} {:>9.1} MB/s {:>9.1} MB/s {:>9.2}x   kept up: {}",
            "  at 80% with the batch log: rate achieved",
            w.achieved_mb_s,
            p.achieved_mb_s,
            w.achieved_mb_s / p.achieved_mb_s,
            w.kept_up
        );
        for (label, o) in [
            ("unthrottled producer", &i.overload),
            ("unthrottled, max-buffered 64 MiB", &i.overload_64mib),
        ] {
            println!(
                "{:<46} {:>9.1} MB/s   peak RSS {:.0} MB, max scheduling delay {:.0} ms",
                format!("  {label}: producer held to"),
                o.achieved_mb_s,
                o.peak_rss_mb,
                o.max_scheduling_ms
            );
        }
    }
    if let Some(boundary) = &r.boundary {
        print_boundary(boundary);
    }
    if let Some(sb) = &r.sandbox {
        print_sandbox(sb);
    }
    if let Some(t) = &r.tenants {
        print_tenants(t);
    }
    if let Some(k) = &r.kafka {
        print_kafka(k);
    }
    if let Some(s) = &r.scale_out {
        print_scale_out(s);
    }
    if let Some(p) = &r.postgres {
        print_postgres(p);
    }
    if let Some(s) = &r.state {
        print_state(s);
    }
    if let Some(u) = &r.ui {
        println!(
            "\nWeb UI ({:.0} MB word count, available-now; a page open: events + 4 requests/s)",
            u.mb
        );
        println!(
            "  UI off {:.2} s, UI on {:.2} s: {:.3}x throughput with the UI ({} requests)",
            u.off_s, u.on_s, u.ratio, u.requests
        );
    }
}

fn print_boundary(boundary: &Boundary) {
    for p in &boundary.partitions {
        println!(
            "{:<46} {:>12.1} us {:>11.1} us {:>9.2}x",
            format!("tokenize one {} partition (columnar vs native)", p.size),
            p.columnar_us,
            p.native_us,
            p.ratio
        );
    }
    if let Some(us) = boundary.empty_call_us {
        println!("{:<46} {:>12.2} us", "empty process call", us);
    }
    if let Some(us) = boundary.instantiate_us {
        println!(
            "{:<46} {:>12.1} us {:>14}",
            "instantiate + configure", us, "target <= 20"
        );
    }
}

fn print_kafka(k: &kafka::KafkaFigures) {
    println!(
        "\nKafka in and out ({:.1} MB, {} records, 8 partitions, test broker on 127.0.0.1)",
        k.input_mb, k.records
    );
    println!(
        "{:<46} {:>9.1} MB/s {:>9.1} MB/s {:>9.2}x",
        "  kafka -> word count -> kafka (exactly-once)", k.spate_mb_s, k.baseline_mb_s, k.ratio
    );
    println!("    baseline: plain consume + produce of the same records, same client library");
    println!(
        "  at {:.1} MB/s (80%): total delay p99 {:.0} ms = {:.2}x the 1 s interval ({} batches); consumer lag median {:.0}, max {} records",
        k.offered_mb_s,
        k.total_delay_p99_ms,
        k.p99_over_interval,
        k.batches,
        k.median_lag_records,
        k.max_lag_records
    );
}

fn print_scale_out(s: &scale_out::ScaleOutFigures) {
    println!(
        "\nScale-out ({:.1} MB, {} records, 8 partitions; word count across the repartition topic, \
         Kafka out exactly-once; test broker on 127.0.0.1, not pinned)",
        s.input_mb, s.records
    );
    println!(
        "{:<46} {:>9.1} MB/s {:>9.1} MB/s {:>9.2}x",
        "  2 processes (1 core each) vs 1", s.two_processes_mb_s, s.one_process_mb_s, s.ratio
    );
    println!(
        "    p99 batch total delay while catching up: 1 process {:.0} ms, 2 processes {:.0} ms",
        s.one_process_p99_ms, s.two_processes_p99_ms
    );
    println!(
        "    the broker used {:.2} cores beside 1 process, {:.2} beside 2 (of the machine's {})",
        s.one_process_broker_cores,
        s.two_processes_broker_cores,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "    Spate used {:.2} cores as 1 process, {:.2} as 2; input per Spate CPU second, \
         2 processes vs 1: {:.2}x; rebalances while 2 were measured: {}",
        s.one_process_spate_cores,
        s.two_processes_spate_cores,
        s.per_cpu_second_ratio,
        s.two_processes_rebalances_in_window
    );
    let shares = |busy: &[(f64, f64)]| {
        busy.iter()
            .map(|(any, maps)| format!("{:.0}% ({:.0}% map)", any * 100.0, maps * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "    a batch running (any task of the process, map tasks alone): 1 process {}; \
         2 processes {}",
        shares(&s.one_process_busy),
        shares(&s.two_processes_busy)
    );
    let gap = &s.rebalance_gap;
    println!(
        "  rebalance (one member leaves, one joins) at {:.1} MB/s: a task went {:.1} s longer \
         than the interval without finishing a batch\n    ({}: a batch on {} at {:+.1} s, the \
         next on {} at {:+.1} s{}; b told to leave at 0 s and c started; logs in \
         {}/so-rebalance-{{a,b,c}}.log)\n    every task moved ran its first batch on its new \
         owner at most {:.1} s after the group gave it there",
        s.rebalance_offered_mb_s,
        gap.seconds,
        gap.task,
        gap.before,
        gap.from_s,
        gap.after,
        gap.to_s,
        gap.assigned_s.map_or(String::new(), |at| format!(
            " (the group gave it there at {at:+.1} s)"
        )),
        gap.logs,
        gap.handover_s
    );
}

fn print_postgres(p: &postgres::PostgresFigures) {
    println!("\nPostgreSQL (throwaway server on 127.0.0.1; spate run end to end vs COPY alone)");
    println!(
        "{:<46} {:>9.0} r/s {:>10.0} r/s {:>9.2}x",
        format!("  append, {} rows (COPY per batch)", p.append_rows),
        p.append_rows_s,
        p.copy_rows_s,
        p.append_ratio
    );
    println!(
        "{:<46} {:>9.0} r/s {:>10.0} r/s {:>9.2}x",
        "  append, connections = 2", p.append_2_rows_s, p.copy_rows_s, p.append_2_ratio
    );
    println!(
        "{:<46} {:>9.0} r/s {:>10.0} r/s {:>9.2}x",
        format!("  upsert, {} rows (COPY + ON CONFLICT)", p.upsert_rows),
        p.upsert_rows_s,
        p.upsert_copy_rows_s,
        p.upsert_ratio
    );
    println!("    baseline: server-side COPY of the same rows from a file");
}

fn print_state(s: &state::StateCost) {
    println!(
        "\nKeyed state and windows ({} keys in state, {} touched per batch; median ms per batch after the first)",
        s.keys, s.touched
    );
    println!(
        "  reduce-by-key (no state)              {:>8.1} ms",
        s.stateless_ms
    );
    println!(
        "  map-with-state                         {:>8.1} ms   {:.2}x reduce-by-key",
        s.map_with_state_ms, s.map_with_state_ratio
    );
    println!(
        "  update-state-by-key                    {:>8.1} ms   {:.2}x map-with-state",
        s.update_state_ms, s.update_over_map_ratio
    );
    println!(
        "  window 10s/5s with inverse, no slide   {:>8.1} ms   {:.2}x reduce-by-key",
        s.window_inverse_ms, s.window_inverse_ratio
    );
    println!(
        "  window with inverse, slide batch       {:>8.1} ms",
        s.window_inverse_slide_ms
    );
    println!(
        "  window without inverse, slide batch    {:>8.1} ms",
        s.window_plain_slide_ms
    );
    let c = &s.checkpoints;
    println!(
        "  map-with-state, checkpoint every batch {:>8.1} ms   {:.2}x without ({} checkpoints)",
        c.processing_ms, c.processing_ratio, c.written
    );
    println!(
        "    checkpoint of {:.1} MB of state: copy {:.1} ms (batches wait), write {:.1} ms (they do not); interval 1000 ms",
        c.state_mb, c.copy_ms, c.write_ms
    );
    println!(
        "    batches wait {:.1}% of a 1 s interval per checkpoint; the whole available-now run took {:.2}x as long",
        c.copy_ms / 10.0,
        c.wall_ratio
    );
}

fn print_sandbox(sb: &sandbox::SandboxCost) {
    println!(
        "{:<46} {:>12.2} s {:>12.2} s {:>9.2}x",
        "word count (2 workers), default limits vs off", sb.default_s, sb.off_s, sb.default_ratio
    );
    println!(
        "{:<46} {:>12.2} s {:>12.2} s {:>9.2}x",
        "  with fuel metering vs off", sb.fuel_s, sb.off_s, sb.fuel_ratio
    );
}

fn print_tenants(t: &tenants::Tenants) {
    println!(
        "{:<46} {:>12.1} ms {:>11.1} ms {:>9.2}x",
        format!(
            "p99 total delay at {:.0} MB/s, beside a burner",
            t.rate_mb_s
        ),
        t.beside_pooled_p99_ms,
        t.alone_pooled_p99_ms,
        t.p99_ratio
    );
    let pairs: Vec<String> = t
        .pairs_p99_ms
        .iter()
        .map(|(alone, beside)| format!("{beside:.0}/{alone:.0} ms = {:.2}x", beside / alone))
        .collect();
    println!(
        "  (the batches of {} alternating pairs of runs, pooled; each pair: {})",
        t.pairs_p99_ms.len(),
        pairs.join(", ")
    );
    println!(
        "{:<46} {:>12.1} ms {:>11.1} ms",
        "  processing time p50, beside a burner vs alone",
        t.beside_burner.processing_p50_ms,
        t.alone.processing_p50_ms
    );
    println!(
        "{:<46} {:>12.1} ms {:>11.1} ms {:>9.2}x",
        format!(
            "p99 total delay at {:.0} MB/s, among 8 tenants",
            t.rate_mb_s / 5.0
        ),
        t.among_eight.total_delay_p99_ms,
        t.alone_fifth.total_delay_p99_ms,
        t.eight_p99_ratio
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn unknown_arguments_are_refused_by_name() {
        assert!(check_args(&args(&["--quick", "--json", "out.json", "--only-state"])).is_ok());
        assert_eq!(
            check_args(&args(&["--only-wordcont"])),
            Err("unknown argument '--only-wordcont'".into())
        );
        assert!(check_args(&args(&["--json"])).is_err());
    }
}
