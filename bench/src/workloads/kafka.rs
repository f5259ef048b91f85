//! Workload: Kafka in and out, against the test broker (tansu, on 127.0.0.1, in memory).
//!
//! - Throughput: the corpus's lines in an 8-partition topic; Spate reads them all
//!   (available-now), tokenizes, counts by key and writes the counts to a topic in one
//!   transaction per batch. The baseline, in the same run, is a plain consume + produce of the
//!   same records with the same client library (librdkafka through rdkafka) on the same
//!   broker: every record read and written again, nothing else.
//! - Latency: a feeder produces the corpus's lines at 80% of the throughput Spate reached, and
//!   Spate's word count (1 s batches) reads them as they come; the p99 of the batches' total
//!   delay is reported against the interval, with the consumer lag (records produced and not
//!   yet in a finished batch) sampled during the run.

use super::WORDCOUNT_STEPS;
use crate::process::{self, BatchLine};
use crate::stats::{median, percentile};
use anyhow::{Context, Result, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 8;
const JOB: &str = "bench-kafka";

/// The workload's figures.
#[derive(Debug, serde::Serialize)]
pub struct KafkaFigures {
    /// MB of records (values) in the input topic.
    pub input_mb: f64,
    /// Records in the input topic.
    pub records: u64,
    /// Plain consume + produce of the same records, MB/s (median of runs).
    pub baseline_mb_s: f64,
    /// Spate's Kafka -> tokenize -> reduce-by-key -> Kafka (exactly-once), MB/s (median).
    pub spate_mb_s: f64,
    /// `spate_mb_s / baseline_mb_s`.
    pub ratio: f64,
    /// The offered rate of the latency run (80% of `spate_mb_s`), MB/s.
    pub offered_mb_s: f64,
    /// Batches measured in the latency run.
    pub batches: usize,
    /// p99 of the batches' total delay, ms.
    pub total_delay_p99_ms: f64,
    /// `total_delay_p99_ms` over the 1 s interval.
    pub p99_over_interval: f64,
    /// Largest consumer lag seen, records.
    pub max_lag_records: u64,
    /// Median consumer lag, records.
    pub median_lag_records: f64,
}

/// A broker on a free port, stopped on drop.
pub(crate) struct Broker {
    child: Child,
    /// Its `host:port`.
    pub(crate) bootstrap: String,
}

impl Broker {
    /// CPU seconds the broker has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        crate::process::cpu_seconds(self.child.id())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs the test broker (the project's script) and starts it on a free loopback port.
pub(crate) fn start_broker(root: &Path) -> Result<Broker> {
    let out = Command::new(root.join("scripts/install-kafka-broker.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running scripts/install-kafka-broker.sh")?;
    if !out.status.success() {
        bail!("scripts/install-kafka-broker.sh failed");
    }
    let binary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .context("the install script prints the broker's path")?
        .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the broker")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the broker did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
    })
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// Creates `topic` with the workload's 8 partitions.
pub(crate) fn create_topic(bootstrap: &str, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for result in runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    Ok(())
}

/// An idempotent producer.
pub(crate) fn producer(bootstrap: &str) -> Result<BaseProducer> {
    Ok(config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?)
}

/// Sends `value` to `topic`, waiting while librdkafka's queue is full.
pub(crate) fn send(producer: &BaseProducer, topic: &str, value: &[u8]) -> Result<()> {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(_), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => bail!("produce: {e}"),
        }
    }
}

/// The corpus's lines (without their newlines) within its first `max_bytes`.
pub(crate) fn corpus_lines(text: &[u8], max_bytes: usize) -> Vec<&[u8]> {
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .scan(0usize, |bytes, line| {
            *bytes += line.len();
            (*bytes <= max_bytes).then_some(line)
        })
        .collect()
}

/// A thread producing lines, round and round, at a fixed rate.
pub(crate) struct Feeder {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Feeder {
    /// Starts producing `lines` into `topic` at `rate` bytes a second.
    pub(crate) fn start(bootstrap: &str, topic: &str, lines: &[&[u8]], rate: f64) -> Feeder {
        let (stop, produced) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let thread = {
            let (stop, produced) = (stop.clone(), produced.clone());
            let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
            let lines: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
            std::thread::spawn(move || -> Result<()> {
                let producer = producer(&bootstrap)?;
                let started = Instant::now();
                let (mut sent_bytes, mut i) = (0f64, 0usize);
                while !stop.load(Ordering::Relaxed) {
                    if sent_bytes > started.elapsed().as_secs_f64() * rate {
                        producer.poll(Duration::from_millis(1));
                        continue;
                    }
                    let line = &lines[i % lines.len()];
                    send(&producer, &topic, line)?;
                    sent_bytes += line.len() as f64;
                    produced.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                producer.flush(Duration::from_secs(30))?;
                Ok(())
            })
        };
        Feeder {
            stop,
            produced,
            thread,
        }
    }

    /// Records produced so far.
    pub(crate) fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    /// Stops producing and waits for what was sent.
    pub(crate) fn stop(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the feeder panicked"))?
    }
}

/// Plain consume + produce: every record of `from` read and written to `to`. Seconds.
fn copy_topic(bootstrap: &str, from: &str, to: &str, records: u64) -> Result<f64> {
    let started = Instant::now();
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", "bench-copy")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition_offset(from, p, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let producer = producer(bootstrap)?;
    let mut copied = 0;
    while copied < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                send(&producer, to, message.payload().unwrap_or_default())?;
                copied += 1;
            }
            Some(Err(e)) => bail!("consume: {e}"),
            None => {}
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("copying took too long ({copied} of {records})");
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(started.elapsed().as_secs_f64())
}

fn pipeline(bootstrap: &str, topic: &str, out: &str, trigger: &str, start: &str) -> String {
    format!(
        r#"[job]
name = "{JOB}"
trigger = "{trigger}"
batch-interval = "1s"

[sources.lines]
type = "kafka"
bootstrap = "{bootstrap}"
topics = ["{topic}"]
starting-offsets = "{start}"

{WORDCOUNT_STEPS}
[[outputs]]
type = "kafka"
bootstrap = "{bootstrap}"
topic = "{out}"
delivery = "exactly-once"
"#
    )
}

/// Runs the workload on the corpus's first `max_bytes` of lines; `reps` runs of each side,
/// `steady_s` seconds of the latency run.
pub fn run(
    root: &Path,
    corpus: &Path,
    max_bytes: usize,
    reps: usize,
    steady_s: u64,
    cache: &Path,
    work: &Path,
) -> Result<KafkaFigures> {
    let broker = start_broker(root)?;
    let bootstrap = broker.bootstrap.clone();
    let text = std::fs::read(corpus)?;
    let lines = corpus_lines(&text, max_bytes);
    let input_bytes: usize = lines.iter().map(|l| l.len()).sum();
    let records = lines.len() as u64;
    create_topic(&bootstrap, "in")?;
    let loader = producer(&bootstrap)?;
    for line in &lines {
        send(&loader, "in", line)?;
    }
    loader.flush(Duration::from_secs(120))?;
    let (mut baseline, mut spate) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let copy = format!("copy-{rep}");
        create_topic(&bootstrap, &copy)?;
        baseline.push(copy_topic(&bootstrap, "in", &copy, records)?);
        let out = format!("out-{rep}");
        create_topic(&bootstrap, &out)?;
        let path = work.join("kafka-throughput.toml");
        std::fs::write(
            &path,
            pipeline(&bootstrap, "in", &out, "available-now", "earliest"),
        )?;
        let finished =
            process::start(&["run", path.to_str().context("UTF-8 path")?], cache)?.finish()?;
        // Kept for a look at where the time went (start-up, batch lines).
        std::fs::write(
            work.join("kafka-throughput.log"),
            finished.stderr.join("\n"),
        )?;
        spate.push(finished.wall.as_secs_f64());
    }
    let mb = input_bytes as f64 / 1e6;
    let (baseline_mb_s, spate_mb_s) = (mb / median(&baseline), mb / median(&spate));

    // Latency at 80% of what Spate sustained.
    let rate = 0.8 * spate_mb_s * 1e6;
    create_topic(&bootstrap, "live")?;
    create_topic(&bootstrap, "live-out")?;
    let path = work.join("kafka-latency.toml");
    std::fs::write(
        &path,
        pipeline(&bootstrap, "live", "live-out", "processing-time", "latest"),
    )?;
    let job = process::start(&["run", path.to_str().context("UTF-8 path")?], cache)?;
    // The source is assigned before the feeder starts (it starts at the latest offsets).
    std::thread::sleep(Duration::from_secs(2));
    let feeder = Feeder::start(&bootstrap, "live", &lines, rate);
    let warmup = Duration::from_secs(3);
    let started = Instant::now();
    let (mut batches, mut lags): (Vec<BatchLine>, Vec<u64>) = (Vec::new(), Vec::new());
    let mut consumed = 0u64;
    while started.elapsed() < warmup + Duration::from_secs(steady_s) {
        while let Ok((_, line)) = job.lines.try_recv() {
            if let Some(b) = process::parse_batch_line(&line)
                && b.job == JOB
            {
                consumed += b.records;
                if started.elapsed() >= warmup {
                    batches.push(b);
                }
            }
        }
        if started.elapsed() >= warmup {
            lags.push(feeder.produced().saturating_sub(consumed));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    job.interrupt();
    job.finish()?;
    feeder.stop()?;
    let total: Vec<f64> = batches.iter().map(|b| b.total_ms).collect();
    let lag_values: Vec<f64> = lags.iter().map(|&l| l as f64).collect();
    let p99 = percentile(&total, 99.0);
    Ok(KafkaFigures {
        input_mb: mb,
        records,
        baseline_mb_s,
        spate_mb_s,
        ratio: spate_mb_s / baseline_mb_s,
        offered_mb_s: rate / 1e6,
        batches: batches.len(),
        total_delay_p99_ms: p99,
        p99_over_interval: p99 / 1000.0,
        max_lag_records: lags.iter().copied().max().unwrap_or(0),
        median_lag_records: median(&lag_values),
    })
}
