//! Kafka topics, with Spark's direct-stream design: Spate, not the consumer group, decides
//! what each batch reads. The receiver assigns itself every partition of the topics (no group
//! rebalancing), reads each from the position Spate recorded, and hands each Kafka partition's
//! records to its own lane of the block buffer with the offset after them
//! ([`Progress::Part`], `topic/partition` -> next offset). So a batch's input is a set of
//! offset ranges, logged with the batch and kept in checkpoints; recovery resumes exactly
//! there. Offsets are also committed to the group once durable, for lag tools only.
//!
//! Record key -> key column (with `key-type`), value -> value, record timestamp -> event time.

use super::{GroupInput, ReceiverContext, Source};
use crate::config::{BadLinePolicy, ByteSize, ConfigError, ConnectorTable, Interval, Trigger};
use crate::kafka::{
    Encoding, OffsetsGroup, Setting, brokers_and_client, client_config, log_client_error,
    log_client_line, parse_part_name, part_name,
};
use crate::position::{Progress, SourcePosition};
use crate::record::StreamType;
use crate::wallclock::now_ms;
use anyhow::{Result, anyhow, bail};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};
use serde::Deserialize;
use spate_guest::Partition;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use toml::Spanned;

/// A lane's records are handed to the buffer once they reach this many bytes (or when the
/// consumer has nothing more right now).
const DELIVER_BYTES: usize = 256 << 10;

/// `type = "kafka"`: the fields of the table.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    /// `host:port[,host:port...]`.
    bootstrap: Option<Spanned<String>>,
    /// Topic names; `*` in a name matches any characters (`events-*`).
    topics: Option<Spanned<Vec<String>>>,
    /// Consumer group the offsets are committed to (default `spate.<tenant>.<job>`).
    group: Option<Spanned<String>>,
    /// `latest` (default), `earliest`, `committed`, an RFC 3339 time, or a table
    /// `{ "topic/partition" = offset }` (-2 earliest, -1 latest).
    starting_offsets: Option<Spanned<toml::Value>>,
    /// Most records read per partition per batch interval.
    max_records_per_partition: Option<u64>,
    /// Most bytes read per partition per batch interval.
    max_bytes_per_partition: Option<ByteSize>,
    /// How keys are encoded; without it the stream is unkeyed (values only).
    key_type: Option<Encoding>,
    /// How values are encoded (default text).
    value_type: Option<Encoding>,
    /// A record whose key or value does not decode: `fail` (default) or `skip`.
    on_bad_record: Option<BadLinePolicy>,
    /// A position the broker no longer has (retention): `fail` (default), `earliest`, `latest`.
    on_offset_out_of_range: Option<OutOfRange>,
    /// How often new partitions and topics are looked for (default 5s).
    partition_discovery_interval: Option<Interval>,
    /// How long the brokers may stay unreachable at start (default 30s).
    connect_timeout: Option<Interval>,
    /// librdkafka settings passed through (`"fetch.min.bytes" = 1`, SASL, TLS).
    client: Option<BTreeMap<String, Setting>>,
    /// Only these partitions of the topics (`"topic/partition"`; Spark's `assign`). A
    /// scale-out task reads its one partition this way.
    assign: Option<Spanned<Vec<String>>>,
}

/// What to do when a partition's position is out of the broker's range.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum OutOfRange {
    /// Stop the job naming topic, partition and offsets.
    #[default]
    Fail,
    /// Go on from the oldest record the broker has (records in between are lost).
    Earliest,
    /// Go on from the end (records in between are skipped).
    Latest,
}

/// Where a new job starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    /// The group's committed offsets (earliest where it has none).
    Committed,
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// Per `topic/partition`: an offset, -2 earliest, -1 latest; unlisted partitions earliest.
    Offsets(BTreeMap<String, i64>),
}

/// A Kafka source.
#[derive(Debug)]
pub struct Kafka {
    name: String,
    bootstrap: String,
    topics: Vec<String>,
    group: String,
    start: Start,
    max_records: Option<u64>,
    max_bytes: Option<u64>,
    key: Option<Encoding>,
    value: Encoding,
    on_bad_record: BadLinePolicy,
    on_out_of_range: OutOfRange,
    discovery: Duration,
    connect_timeout: Duration,
    client: BTreeMap<String, Setting>,
    /// `assign`: the only partitions read (none: every partition of the topics).
    assigned: Option<Vec<(String, i32)>>,
}

/// Reads a Kafka source's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError> {
    let fields: Fields = table.fields()?;
    let (bootstrap, client) = brokers_and_client(table, &fields.bootstrap, fields.client)?;
    let topics = table.required("topics", &fields.topics)?.clone();
    if topics.is_empty() {
        let span = fields.topics.as_ref().map_or(0..0, Spanned::span);
        return Err(table.error_at(span, "topics", "name at least one topic"));
    }
    let assigned = match &fields.assign {
        Some(parts) => Some(
            parts
                .get_ref()
                .iter()
                .map(|name| {
                    parse_part_name(name)
                        .map(|(topic, partition)| (topic.to_owned(), partition))
                        .ok_or_else(|| {
                            table.error_at(
                                parts.span(),
                                "assign",
                                format!("'{name}' is not a partition: write \"topic/partition\""),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let start = match &fields.starting_offsets {
        Some(value) => parse_start(value.get_ref())
            .map_err(|e| table.error_at(value.span(), "starting-offsets", e))?,
        None => Start::Latest,
    };

    let name = table.path();
    let source = Kafka {
        name: name.trim_start_matches("sources.").to_owned(),
        bootstrap,
        topics,
        group: table.per_job_name("group", fields.group.as_ref(), "")?,
        start,
        max_records: fields.max_records_per_partition,
        max_bytes: fields.max_bytes_per_partition.map(|b| b.0),
        key: fields.key_type,
        value: fields.value_type.unwrap_or_default(),
        on_bad_record: fields.on_bad_record.unwrap_or_default(),
        on_out_of_range: fields.on_offset_out_of_range.unwrap_or_default(),
        discovery: fields
            .partition_discovery_interval
            .map_or(Duration::from_secs(5), |i| i.0),
        connect_timeout: fields
            .connect_timeout
            .map_or(Duration::from_secs(30), |i| i.0),
        client,
        assigned,
    };
    // Settings are checked now, so that a bad one is reported at the table's line.
    source
        .config()
        .map_err(|e| table.error(format!("kafka source: {e}")))?;
    Ok(Box::new(source))
}

/// `starting-offsets` as written.
fn parse_start(value: &toml::Value) -> Result<Start, String> {
    const EXPECTED: &str = "expected \"latest\", \"earliest\", \"committed\", an RFC 3339 time \
                            (\"2026-12-01T00:00:00Z\") or a table {\"topic/0\" = offset}";
    match value {
        toml::Value::String(s) => match s.as_str() {
            "latest" => Ok(Start::Latest),
            "earliest" => Ok(Start::Earliest),
            "committed" => Ok(Start::Committed),
            time => humantime::parse_rfc3339_weak(time)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| Start::Time(d.as_millis() as i64))
                .ok_or_else(|| format!("`{time}`: {EXPECTED}")),
        },
        toml::Value::Table(table) => {
            let mut offsets = BTreeMap::new();
            for (part, offset) in table {
                if parse_part_name(part).is_none() {
                    return Err(format!("`{part}` is not a partition (\"topic/partition\")"));
                }
                match offset.as_integer() {
                    Some(n) if n >= -2 => {
                        offsets.insert(part.clone(), n);
                    }
                    _ => return Err(format!("`{part}`: an offset >= 0, -2 or -1")),
                }
            }
            Ok(Start::Offsets(offsets))
        }
        _ => Err(EXPECTED.to_owned()),
    }
}

/// A named topic the cluster does not have.
#[derive(Debug, thiserror::Error)]
#[error("topic '{topic}' does not exist at {bootstrap} (create it first, or check the name)")]
struct MissingTopic {
    topic: String,
    bootstrap: String,
}

/// The brokers did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the Kafka brokers at {bootstrap} within {patience} ({error}): is the broker \
     running, and is `bootstrap` right?"
)]
struct Unreachable {
    bootstrap: String,
    patience: String,
    error: String,
}

/// librdkafka's log lines and client errors, into Spate's log, naming the source.
pub(super) struct Log {
    /// The source's name.
    pub(super) source: String,
}

impl ClientContext for Log {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(&self.connector(), level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&self.connector(), &error, reason);
    }
}

impl Log {
    fn connector(&self) -> String {
        format!("kafka source '{}'", self.source)
    }
}

impl ConsumerContext for Log {}

type Client = BaseConsumer<Log>;

impl Kafka {
    fn config(&self) -> Result<rdkafka::ClientConfig, String> {
        let reset = match self.on_out_of_range {
            OutOfRange::Fail => "error",
            OutOfRange::Earliest => "earliest",
            OutOfRange::Latest => "latest",
        };
        let mut config = client_config(
            &self.bootstrap,
            &[
                ("client.id", "spate"),
                // A fetch waits at most this long for data: the latency a batch can add.
                ("fetch.wait.max.ms", "100"),
                ("topic.metadata.refresh.interval.ms", "10000"),
            ],
            &self.client,
        )?;
        config
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set("enable.partition.eof", "true");
        Ok(config)
    }

    fn connect(&self) -> Result<Client> {
        let config = self.config().map_err(|e| anyhow!(e))?;
        config
            .create_with_context(Log {
                source: self.name.clone(),
            })
            .map_err(|e| anyhow!("cannot create a Kafka client: {e}"))
    }

    /// The partitions of the topics (with globs matched), waiting up to `connect-timeout` for
    /// the brokers, one log line per failed try. A named topic the cluster lacks is an error.
    fn partitions(&self, client: &Client, patience: Duration) -> Result<Vec<(String, i32)>> {
        let deadline = Instant::now() + patience;
        let mut wait = Duration::from_millis(250);
        let metadata = loop {
            match client.fetch_metadata(None, Duration::from_secs(5)) {
                Ok(metadata) if !metadata.brokers().is_empty() => break metadata,
                Ok(_) => tracing::warn!(
                    "kafka source '{}': no broker at {} answered yet; retrying",
                    self.name,
                    self.bootstrap
                ),
                Err(e) => {
                    if Instant::now() + wait >= deadline {
                        return Err(Unreachable {
                            bootstrap: self.bootstrap.clone(),
                            patience: humantime::format_duration(patience).to_string(),
                            error: e.to_string(),
                        }
                        .into());
                    }
                    tracing::warn!(
                        "kafka source '{}': brokers at {} not reachable ({e}); retrying in {}",
                        self.name,
                        self.bootstrap,
                        humantime::format_duration(wait)
                    );
                }
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(5));
        };
        self.match_topics(&metadata)
    }

    fn match_topics(&self, metadata: &Metadata) -> Result<Vec<(String, i32)>> {
        let mut parts = Vec::new();
        for wanted in &self.topics {
            let mut found = false;
            for topic in metadata.topics() {
                let name = topic.name();
                let matches = if wanted.contains('*') {
                    !name.starts_with("__") && glob_matches(wanted, name)
                } else {
                    name == wanted
                };
                if !matches {
                    continue;
                }
                if let Some(error) = topic.error() {
                    let code = RDKafkaErrorCode::from(error);
                    if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                        continue;
                    }
                    bail!("topic '{name}': {code}");
                }
                found |= !topic.partitions().is_empty();
                for partition in topic.partitions() {
                    parts.push((name.to_owned(), partition.id()));
                }
            }
            if !found && !wanted.contains('*') {
                return Err(MissingTopic {
                    topic: wanted.clone(),
                    bootstrap: self.bootstrap.clone(),
                }
                .into());
            }
        }
        parts.sort();
        parts.dedup();
        if let Some(assigned) = &self.assigned {
            if let Some((topic, partition)) = assigned.iter().find(|a| !parts.contains(a)) {
                bail!(
                    "partition {} (in `assign`) does not exist at {}",
                    part_name(topic, *partition),
                    self.bootstrap
                );
            }
            parts.retain(|part| assigned.contains(part));
        }
        Ok(parts)
    }

    /// Where each partition starts for a new job.
    fn starting_offsets(&self, client: &Client, parts: &[(String, i32)]) -> Result<Vec<i64>> {
        let timeout = Duration::from_secs(10);
        let earliest = |(topic, partition): &(String, i32)| -> Result<i64> {
            let (low, _) = client
                .fetch_watermarks(topic, *partition, timeout)
                .map_err(|e| anyhow!("partition {topic}/{partition}: {e}"))?;
            Ok(low)
        };
        match &self.start {
            Start::Earliest => parts.iter().map(earliest).collect(),
            Start::Latest => latest_offsets(client, parts),
            Start::Committed => {
                let mut list = TopicPartitionList::new();
                for (topic, partition) in parts {
                    list.add_partition(topic, *partition);
                }
                let committed = client
                    .committed_offsets(list, timeout)
                    .map_err(|e| anyhow!("cannot read group '{}' offsets: {e}", self.group))?;
                parts
                    .iter()
                    .map(|part| match committed.find_partition(&part.0, part.1) {
                        Some(e) => match e.offset() {
                            Offset::Offset(n) => Ok(n),
                            _ => earliest(part),
                        },
                        None => earliest(part),
                    })
                    .collect()
            }
            Start::Time(ms) => {
                let mut list = TopicPartitionList::new();
                for (topic, partition) in parts {
                    list.add_partition_offset(topic, *partition, Offset::Offset(*ms))?;
                }
                let found = client
                    .offsets_for_times(list, timeout)
                    .map_err(|e| anyhow!("cannot look offsets up by time: {e}"))?;
                let ends = latest_offsets(client, parts)?;
                parts
                    .iter()
                    .zip(ends)
                    .map(|(part, end)| match found.find_partition(&part.0, part.1) {
                        Some(e) => match e.offset() {
                            Offset::Offset(n) => Ok(n),
                            // No record at or after the time: start at the end.
                            _ => Ok(end),
                        },
                        None => Ok(end),
                    })
                    .collect()
            }
            Start::Offsets(given) => {
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    out.push(match given.get(&part_name(&part.0, part.1)) {
                        Some(-1) => latest_offsets(client, std::slice::from_ref(part))?[0],
                        Some(n) if *n >= 0 => *n,
                        _ => earliest(part)?,
                    });
                }
                Ok(out)
            }
        }
    }
}

/// The end offset of each partition. Asked of the broker (ListOffsets) and then checked by
/// reading from there to the end: some brokers (tansu) answer ListOffsets(latest) short of the
/// end after a multi-record batch, while the high watermark of a fetch is right.
fn latest_offsets(client: &Client, parts: &[(String, i32)]) -> Result<Vec<i64>> {
    let timeout = Duration::from_secs(10);
    let mut ends = Vec::with_capacity(parts.len());
    let mut list = TopicPartitionList::new();
    for (topic, partition) in parts {
        let (_, high) = client
            .fetch_watermarks(topic, *partition, timeout)
            .map_err(|e| anyhow!("partition {topic}/{partition}: {e}"))?;
        ends.push(high);
        list.add_partition_offset(topic, *partition, Offset::Offset(high))?;
    }
    if parts.is_empty() {
        return Ok(ends);
    }
    client.assign(&list)?;
    let mut open: Vec<bool> = vec![true; parts.len()];
    let deadline = Instant::now() + timeout;
    while open.iter().any(|o| *o) && Instant::now() < deadline {
        match client.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let at = parts
                    .iter()
                    .position(|(t, p)| t == message.topic() && *p == message.partition());
                if let Some(i) = at {
                    ends[i] = ends[i].max(message.offset() + 1);
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                for (i, (topic, p)) in parts.iter().enumerate() {
                    if *p == partition
                        && let Some(high) = cached_high_watermark(client, topic, *p)
                    {
                        ends[i] = ends[i].max(high);
                        open[i] = false;
                    }
                }
            }
            _ => {}
        }
    }
    client.unassign()?;
    Ok(ends)
}

/// The high watermark of the last fetch response for a partition, if one came.
fn cached_high_watermark(client: &Client, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is live for the call, `topic` is a NUL-terminated string that
    // outlives it, and the out-pointers are valid i64s; the call only reads the client's
    // cached fetch state.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            client.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// The error of a position the broker does not have.
fn out_of_range(part: &str, next: i64, low: i64, end: i64) -> anyhow::Error {
    anyhow!(
        "partition {part}: offset {next} is out of range (the broker holds {low} to {end}; \
         records were deleted by retention, or the topic was recreated). \
         on-offset-out-of-range = \"earliest\" or \"latest\" goes on from there"
    )
}

/// A topic glob (`events-*`) as a regular expression, for a group subscription.
fn regex_of_glob(glob: &str) -> String {
    let mut regex = String::new();
    for c in glob.chars() {
        match c {
            '*' => regex.push_str(".*"),
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => regex.push(c),
            c => {
                regex.push('\\');
                regex.push(c);
            }
        }
    }
    regex
}

/// `*` matches any run of characters.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    for (i, piece) in pieces.iter().enumerate() {
        if i == pieces.len() - 1 {
            return rest.ends_with(piece);
        }
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

impl Kafka {
    /// Where a new job starts, in words (for `spate check` and the start's log line).
    fn describe_start(&self) -> String {
        match &self.start {
            Start::Earliest => "earliest".to_owned(),
            Start::Latest => "latest".to_owned(),
            Start::Committed => format!("group '{}' committed offsets", self.group),
            Start::Time(ms) => format!(
                "the first record at or after {}",
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + Duration::from_millis(*ms as u64)
                )
            ),
            Start::Offsets(given) => format!("{given:?} (others earliest)"),
        }
    }
}

impl Source for Kafka {
    fn describe(&self) -> String {
        let start = self.describe_start();
        let limits = match (self.max_records, self.max_bytes) {
            (None, None) => "no per-batch limit".to_owned(),
            (records, bytes) => format!(
                "per partition and batch at most {}{}",
                records.map_or(String::new(), |r| format!("{r} records ")),
                bytes.map_or(String::new(), |b| format!("{b} bytes"))
            ),
        };
        let partitions = match self
            .connect()
            .and_then(|c| self.partitions(&c, Duration::from_secs(3)))
        {
            Ok(parts) => {
                let names: Vec<String> = parts.iter().map(|(t, p)| part_name(t, *p)).collect();
                format!("partitions {} ({})", names.join(" "), names.len())
            }
            Err(e) => format!("partitions unknown: {e:#}"),
        };
        format!(
            "kafka topics {:?} at {}; {partitions}; a Spate partition per Kafka partition and \
             block; new job starts at {start}; {limits}; {} (bad records: {:?}, offset out of \
             range: {:?}); offsets kept in the batch log and checkpoints (exactly-once input \
             with a checkpoint-dir), committed to group '{}' for lag tools",
            self.topics,
            self.bootstrap,
            self.stream_type(),
            self.on_bad_record,
            self.on_out_of_range,
            self.group,
        )
    }

    fn stream_type(&self) -> StreamType {
        crate::kafka::stream_type(self.key, self.value)
    }

    fn start(&self, _trigger: Trigger) -> Result<Vec<Progress>> {
        let began = Instant::now();
        let client = self.connect()?;
        let parts = self.partitions(&client, self.connect_timeout)?;
        let offsets = self.starting_offsets(&client, &parts)?;
        tracing::info!(
            "kafka source '{}': a new job starts {} partitions of {:?} at {} (resolved in {} ms)",
            self.name,
            parts.len(),
            self.topics,
            self.describe_start(),
            began.elapsed().as_millis()
        );
        Ok(parts
            .iter()
            .zip(offsets)
            .map(|((topic, partition), next)| Progress::Part {
                name: part_name(topic, *partition),
                next: next.max(0) as u64,
            })
            .collect())
    }

    fn prune(&self, _position: &mut SourcePosition) {}

    fn receive(&self, context: &ReceiverContext) -> Result<()> {
        Receiver::new(self, context)?.run()
    }

    fn offsets_group(&self) -> Option<OffsetsGroup> {
        Some(OffsetsGroup {
            group: self.group.clone(),
            bootstrap: self.bootstrap.clone(),
        })
    }

    fn group_input(&self) -> Option<GroupInput> {
        let topics = self
            .topics
            .iter()
            .map(|topic| match topic.contains('*') {
                true => format!("^{}$", regex_of_glob(topic)),
                false => topic.clone(),
            })
            .collect();
        // The settings were checked when the table was read.
        let client = self.config().ok()?;
        Some(GroupInput { client, topics })
    }
}

/// One Kafka partition being read.
struct Lane {
    topic: String,
    partition: i32,
    name: String,
    lane: u32,
    /// Offset of the next record to hand over.
    next: i64,
    /// `next` as last handed to the buffer.
    handed: i64,
    /// Records read but not yet handed to the buffer.
    pending: Partition,
    /// Read in the current batch interval (the per-batch limits).
    records_in_interval: u64,
    bytes_in_interval: u64,
    paused: bool,
    /// The consumer reached the partition's end (available-now ends when all have).
    at_end: bool,
}

struct Receiver<'a> {
    source: &'a Kafka,
    context: &'a ReceiverContext,
    client: Client,
    lanes: Vec<Lane>,
    interval: u64,
    last_discovery: Instant,
    committed: BTreeMap<String, u64>,
    last_commit: Instant,
}

impl<'a> Receiver<'a> {
    fn new(source: &'a Kafka, context: &'a ReceiverContext) -> Result<Self> {
        let client = source.connect()?;
        let mut receiver = Receiver {
            source,
            context,
            client,
            lanes: Vec::new(),
            interval: 0,
            last_discovery: Instant::now(),
            committed: BTreeMap::new(),
            last_commit: Instant::now(),
        };
        let began = Instant::now();
        receiver.discover(source.connect_timeout)?;
        tracing::info!(
            "kafka source '{}': reading {} partitions (assigned in {} ms)",
            source.name,
            receiver.lanes.len(),
            began.elapsed().as_millis()
        );
        Ok(receiver)
    }

    /// Assigns partitions not read yet, each from its recorded position (a partition that
    /// appeared after the job started, from its beginning).
    fn discover(&mut self, patience: Duration) -> Result<()> {
        self.last_discovery = Instant::now();
        let known = self.lanes.len();
        let parts = match self.source.partitions(&self.client, patience) {
            Ok(parts) => parts,
            // A topic read so far that the cluster no longer has.
            Err(e) if known > 0 && e.is::<MissingTopic>() => {
                let topic = e.downcast_ref::<MissingTopic>().map(|m| m.topic.clone());
                bail!(
                    "topic '{}' no longer exists (deleted?)",
                    topic.unwrap_or_default()
                );
            }
            Err(e) => return Err(e),
        };
        if let Some(gone) = self
            .lanes
            .iter()
            .find(|l| !parts.iter().any(|(t, _)| *t == l.topic))
        {
            bail!("topic '{}' no longer exists (deleted?)", gone.topic);
        }
        for (topic, partition) in parts {
            if self
                .lanes
                .iter()
                .any(|l| l.topic == topic && l.partition == partition)
            {
                continue;
            }
            let name = part_name(&topic, partition);
            let next = match self.context.resume.parts.get(&name) {
                Some(next) => *next as i64,
                None => {
                    if known > 0 {
                        tracing::info!(
                            "kafka source '{}': new partition {name}, read from its start",
                            self.source.name
                        );
                    }
                    -2
                }
            };
            let lane = self.lanes.len() as u32;
            self.lanes.push(Lane {
                topic,
                partition,
                name,
                lane,
                next,
                handed: -1,
                pending: self.empty_partition(),
                records_in_interval: 0,
                bytes_in_interval: 0,
                paused: false,
                at_end: false,
            });
        }
        let new: Vec<(String, i32)> = self.lanes[known..]
            .iter()
            .map(|l| (l.topic.clone(), l.partition))
            .collect();
        // Where the broker's range ends, checked by reading (some brokers answer ListOffsets
        // short, and some answer a fetch past the end with nothing instead of an error).
        let ends = latest_offsets(&self.client, &new)?;
        for (lane, end) in self.lanes[known..].iter_mut().zip(ends) {
            let (low, _) = self
                .client
                .fetch_watermarks(&lane.topic, lane.partition, Duration::from_secs(10))
                .map_err(|e| anyhow!("partition {}: {e}", lane.name))?;
            // A partition read from its beginning: its first offset is the low watermark.
            if lane.next < 0 {
                lane.next = low;
            } else if lane.next < low || lane.next > end {
                lane.next = match self.source.on_out_of_range {
                    OutOfRange::Fail => return Err(out_of_range(&lane.name, lane.next, low, end)),
                    OutOfRange::Earliest => low,
                    OutOfRange::Latest => end,
                };
                tracing::warn!(
                    "kafka source '{}': partition {} was out of range; reading from offset {} \
                     (on-offset-out-of-range = {:?})",
                    self.source.name,
                    lane.name,
                    lane.next,
                    self.source.on_out_of_range
                );
            }
        }
        if self.lanes.len() > known || known == 0 {
            self.assign()?;
        }
        Ok(())
    }

    fn assign(&mut self) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for lane in &self.lanes {
            list.add_partition_offset(&lane.topic, lane.partition, Offset::Offset(lane.next))?;
        }
        self.client.assign(&list)?;
        let paused: Vec<usize> = (0..self.lanes.len())
            .filter(|&i| self.lanes[i].paused)
            .collect();
        for i in paused {
            self.set_paused(i, true)?;
        }
        Ok(())
    }

    fn empty_partition(&self) -> Partition {
        Partition {
            keys: self.source.key.map(|_| Default::default()),
            ..Default::default()
        }
    }

    fn run(mut self) -> Result<()> {
        let available_now = self.context.trigger == Trigger::AvailableNow;
        let interval_ms = self.context.batch_interval.as_millis().max(1) as u64;
        loop {
            if self.context.buffer.is_stopping() {
                self.deliver_all();
                self.commit_durable(CommitMode::Sync);
                return Ok(());
            }
            let interval = now_ms() / interval_ms;
            if interval != self.interval {
                self.interval = interval;
                self.new_interval()?;
            }
            if self.last_discovery.elapsed() >= self.source.discovery {
                match self.discover(Duration::from_secs(5)) {
                    // The brokers away mid-run: reading resumes when librdkafka reconnects,
                    // and the next discovery tries again.
                    Err(e) if e.is::<Unreachable>() => {
                        tracing::warn!("kafka source '{}': {e}", self.source.name)
                    }
                    result => result?,
                }
            }
            if self.last_commit.elapsed() >= Duration::from_secs(1) {
                self.commit_durable(CommitMode::Async);
            }
            match self.client.poll(Duration::from_millis(50)) {
                None => {
                    if !self.deliver_all() {
                        return Ok(());
                    }
                    if available_now && self.lanes.iter().all(|l| l.at_end) {
                        // The job ends once what was read is processed; then the group gets
                        // the final offsets, so lag tools show the run caught up.
                        self.context.end_input();
                        self.context.buffer.wait_until_stopping();
                        self.commit_durable(CommitMode::Sync);
                        return Ok(());
                    }
                }
                Some(Ok(message)) => {
                    let at = self.lanes.iter().position(|l| {
                        l.partition == message.partition() && l.topic == message.topic()
                    });
                    let Some(i) = at else { continue };
                    // Read before (a re-assign), or past the per-batch limit of a paused lane
                    // (read again from `next` when it resumes).
                    if message.offset() < self.lanes[i].next || self.lanes[i].paused {
                        continue;
                    }
                    take(self.source, self.context, &mut self.lanes[i], &message)?;
                    drop(message);
                    if self.over_limit(i) {
                        self.set_paused(i, true)?;
                    }
                    if self.lanes[i].pending.values.data.len() >= DELIVER_BYTES && !self.deliver(i)
                    {
                        return Ok(());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    for lane in self.lanes.iter_mut().filter(|l| l.partition == partition) {
                        if cached_high_watermark(&self.client, &lane.topic, partition)
                            .is_some_and(|high| high <= lane.next)
                        {
                            lane.at_end = true;
                        }
                    }
                }
                Some(Err(e)) => self.consumer_error(e)?,
            }
        }
    }

    fn over_limit(&self, i: usize) -> bool {
        let lane = &self.lanes[i];
        self.source
            .max_records
            .is_some_and(|max| lane.records_in_interval >= max)
            || self
                .source
                .max_bytes
                .is_some_and(|max| lane.bytes_in_interval >= max)
    }

    fn set_paused(&mut self, i: usize, paused: bool) -> Result<()> {
        let lane = &mut self.lanes[i];
        let mut list = TopicPartitionList::new();
        list.add_partition(&lane.topic, lane.partition);
        if paused {
            self.client.pause(&list)?;
        } else {
            self.client.resume(&list)?;
        }
        lane.paused = paused;
        Ok(())
    }

    /// A new batch interval: the per-batch limits start again.
    fn new_interval(&mut self) -> Result<()> {
        for i in 0..self.lanes.len() {
            let lane = &mut self.lanes[i];
            lane.records_in_interval = 0;
            lane.bytes_in_interval = 0;
            if lane.paused {
                // Records fetched before the pause and read past it are dropped by librdkafka's
                // pause; read again from the lane's own position.
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&lane.topic, lane.partition, Offset::Offset(lane.next))?;
                self.set_paused(i, false)?;
                self.client
                    .seek_partitions(list, Duration::from_secs(5))
                    .map_err(|e| anyhow!("partition {}: {e}", self.lanes[i].name))?;
            }
        }
        Ok(())
    }

    /// Hands a lane's pending records to the buffer; false when the job is stopping.
    fn deliver(&mut self, i: usize) -> bool {
        let empty = self.empty_partition();
        let lane = &mut self.lanes[i];
        let progress = Progress::Part {
            name: lane.name.clone(),
            next: lane.next.max(0) as u64,
        };
        lane.handed = lane.next;
        let mut records = std::mem::replace(&mut lane.pending, empty);
        self.context.buffer.push_records(
            self.context.index,
            lane.lane,
            &mut records,
            Some(progress),
        )
    }

    fn deliver_all(&mut self) -> bool {
        let mut going = true;
        for i in 0..self.lanes.len() {
            let lane = &self.lanes[i];
            if !lane.pending.is_empty() || lane.next != lane.handed {
                going &= self.deliver(i);
            }
        }
        going
    }

    /// Commits the durable offsets to the group, for lag tools: once a second while running
    /// (`Async`), and when the job ends (`Sync`, so that the group holds where it ended before
    /// the process exits; a broker away then delays the exit by librdkafka's request timeout).
    /// Not when an output commits them in its transactions.
    fn commit_durable(&mut self, mode: CommitMode) {
        self.last_commit = Instant::now();
        // Where each partition ends, as the last fetch saw it: the UI shows the lag.
        for lane in &self.lanes {
            if let Some(high) = cached_high_watermark(&self.client, &lane.topic, lane.partition) {
                self.context.gauges.set_end(&lane.name, high.max(0) as u64);
            }
        }
        if self.context.offsets_in_transactions {
            return;
        }
        let durable = self.context.acks.position(self.context.index).parts;
        let mut list = TopicPartitionList::new();
        for (name, next) in &durable {
            if self.committed.get(name) == Some(next) {
                continue;
            }
            if let Some((topic, partition)) = parse_part_name(name)
                && list
                    .add_partition_offset(topic, partition, Offset::Offset(*next as i64))
                    .is_ok()
            {
                self.committed.insert(name.clone(), *next);
            }
        }
        if list.count() > 0
            && let Err(e) = self.client.commit(&list, mode)
        {
            tracing::debug!(
                "kafka source '{}': offsets not committed to group '{}': {e}",
                self.source.name,
                self.source.group
            );
        }
    }

    /// A consumer error: a partition out of range or a topic gone fails the job naming it;
    /// anything else (a broker away) is logged while librdkafka retries.
    fn consumer_error(&mut self, error: KafkaError) -> Result<()> {
        let code = error.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                for lane in &self.lanes {
                    let (low, high) = self
                        .client
                        .fetch_watermarks(&lane.topic, lane.partition, Duration::from_secs(10))
                        .unwrap_or((-1, -1));
                    if lane.next < low || (high >= 0 && lane.next > high) {
                        return Err(out_of_range(&lane.name, lane.next, low, high));
                    }
                }
                bail!("an offset is out of range: {error}");
            }
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                let topics: Vec<&str> = self.lanes.iter().map(|l| l.topic.as_str()).collect();
                let metadata = self.client.fetch_metadata(None, Duration::from_secs(5))?;
                for topic in topics {
                    let gone = !metadata
                        .topics()
                        .iter()
                        .any(|t| t.name() == topic && t.error().is_none());
                    if gone {
                        bail!("topic '{topic}' no longer exists (deleted?)");
                    }
                }
                tracing::warn!("kafka source '{}': {error}", self.source.name);
                Ok(())
            }
            _ => {
                self.context.gauges.error(error.to_string());
                tracing::warn!("kafka source '{}': {error}", self.source.name);
                Ok(())
            }
        }
    }
}

/// One record into its lane's pending records, or refused by the bad-record policy.
fn take(
    source: &Kafka,
    context: &ReceiverContext,
    lane: &mut Lane,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> Result<()> {
    let (key_encoding, value_encoding) = (source.key, source.value);
    let offset = message.offset();
    lane.next = offset + 1;
    lane.at_end = false;
    let bytes = message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len);
    lane.records_in_interval += 1;
    lane.bytes_in_interval += bytes as u64;
    let pending = &mut lane.pending;
    let key_mark = pending.keys.as_ref().map(|k| k.data.len());
    let decoded = (|| {
        if let (Some(encoding), Some(keys)) = (key_encoding, pending.keys.as_mut()) {
            encoding
                .decode_into(message.key(), keys.begin_value())
                .map_err(|e| format!("key: {e}"))?;
            keys.end_value();
        }
        value_encoding
            .decode_into(message.payload(), pending.values.begin_value())
            .map_err(|e| format!("value: {e}"))
    })();
    match decoded {
        Ok(()) => {
            pending.values.end_value();
            let time = match message.timestamp() {
                Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
                Timestamp::NotAvailable => now_ms() as i64,
            };
            pending.timestamps.push(time);
        }
        Err(reason) => {
            // Undo a key appended before the value failed.
            if let (Some(mark), Some(keys)) = (key_mark, pending.keys.as_mut())
                && keys.data.len() != mark
            {
                keys.data.truncate(mark);
                keys.offsets.pop();
            }
            let what = format!("partition {} offset {offset}: {reason}", lane.name);
            match source.on_bad_record {
                BadLinePolicy::Fail => {
                    bail!("bad record at {what} (on-bad-record = \"skip\" drops such records)")
                }
                BadLinePolicy::Skip => {
                    tracing::warn!("kafka source '{}': skipped {what}", source.name);
                    context.buffer.count_skipped(1);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_topic_names() {
        assert!(glob_matches("events-*", "events-eu"));
        assert!(glob_matches("*-in", "a-in"));
        assert!(glob_matches("a*b*c", "a-x-b-y-c"));
        assert!(!glob_matches("a*b*c", "a-x-c"));
        assert!(!glob_matches("events-*", "other"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert_eq!(regex_of_glob("events.eu-*"), "events\\.eu-.*");
    }

    #[test]
    fn starting_offsets_are_read_with_clear_errors() {
        let value = |s: &str| -> toml::Value {
            toml::from_str::<toml::Table>(&format!("v = {s}")).unwrap()["v"].clone()
        };
        assert_eq!(parse_start(&value("\"earliest\"")), Ok(Start::Earliest));
        assert_eq!(
            parse_start(&value("\"2026-12-01T00:00:00Z\"")),
            Ok(Start::Time(1_796_083_200_000))
        );
        assert_eq!(
            parse_start(&value("{ \"t/0\" = 5, \"t/1\" = -2 }")),
            Ok(Start::Offsets(BTreeMap::from([
                ("t/0".to_owned(), 5),
                ("t/1".to_owned(), -2)
            ])))
        );
        assert!(
            parse_start(&value("\"soon\""))
                .unwrap_err()
                .contains("expected \"latest\"")
        );
        assert!(
            parse_start(&value("{ t = 5 }"))
                .unwrap_err()
                .contains("not a partition")
        );
        assert!(parse_start(&value("{ \"t/0\" = -7 }")).is_err());
    }
}
