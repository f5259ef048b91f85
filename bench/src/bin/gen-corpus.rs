//! Writes the benchmark corpus: `gen-corpus OUT --mb 200 --seed 42`.

use std::io::Write;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = None;
    let (mut mb, mut seed) = (200.0f64, 42u64);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--mb" => {
                mb = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            }
            "--seed" => {
                seed = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX)
            }
            path => {
                out = Some(path.to_owned());
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    let (Some(out), true) = (out, mb.is_finite() && mb > 0.0) else {
        eprintln!("usage: gen-corpus OUT [--mb 200] [--seed 42]");
        return std::process::ExitCode::from(2);
    };
    let target = (mb * 1e6) as usize;
    let mut corpus = spate_bench::corpus::Corpus::new(seed);
    let file = match std::fs::File::create(&out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot create {out}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let (mut written, mut words, mut lines) = (0usize, 0usize, 0usize);
    let mut chunk = Vec::with_capacity(1 << 20);
    while written < target {
        chunk.clear();
        while chunk.len() < (1 << 20) && written + chunk.len() < target {
            words += corpus.line(&mut chunk);
            lines += 1;
        }
        if let Err(e) = writer.write_all(&chunk) {
            eprintln!("error: writing {out}: {e}");
            return std::process::ExitCode::from(1);
        }
        written += chunk.len();
    }
    if let Err(e) = writer.flush() {
        eprintln!("error: writing {out}: {e}");
        return std::process::ExitCode::from(1);
    }
    eprintln!("wrote {out}: {written} bytes, {lines} lines, {words} words, seed {seed}");
    std::process::ExitCode::SUCCESS
}
