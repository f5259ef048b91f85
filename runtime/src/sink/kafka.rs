//! A Kafka topic as an output: each record of a batch becomes a Kafka record (the stream's key
//! and value, encoded as Kafka's standard serializers encode their types), partitioned as
//! Kafka's default partitioner does (murmur2 of the key), so other Kafka clients co-partition
//! with Spate's output. The producer is always idempotent.
//!
//! `delivery = "exactly-once"` (the default) writes each batch in one Kafka transaction whose
//! transactional id is derived from tenant, job, topic and the writing task: a restarted job's
//! producer fences the old one (its open transaction is aborted), and the same transaction
//! commits the batch time as the offset of a marker group, so a batch replayed after a crash
//! finds itself committed and is not written twice. `"at-least-once"` writes without
//! transactions: a replayed batch is written again.
//!
//! Every record carries the headers `spate-batch-time` (the batch time in ms), `spate-task`
//! (the writing task) and `spate-attempt` (one per transaction tried), so that a consumer can
//! tell batches apart and, where the broker shows aborted transactions' records (a broker
//! without read_committed isolation), keep only each batch's last attempt.

use super::claim::Claim;
use super::retry::{Permanent, retrying};
use super::{Output, OutputContext, OutputGauges, Replay, Sink};
use crate::config::{ConfigError, ConnectorTable};
use crate::kafka::{
    END_HEADER, Encoding, OffsetsGroup, PREVIOUS_HEADER, RECORDS_HEADER, STREAM_HEADER, Setting,
    brokers_and_client, client_config, log_client_error, log_client_line, murmur2_partition,
    parse_part_name, same_cluster,
};
use crate::position::Progress;
use crate::record::{Shape, StreamType, write_value};
use anyhow::{Context, Result, anyhow, bail};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use spate_guest::Partition;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toml::Spanned;

/// How long the writer keeps trying a batch while the brokers are away.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// `type = "kafka"`: the fields of the table.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    /// `host:port[,host:port...]`.
    bootstrap: Option<Spanned<String>>,
    /// The topic written.
    topic: Option<Spanned<String>>,
    /// `exactly-once` (default) or `at-least-once`.
    delivery: Option<Delivery>,
    /// `native` (default): scalars as Kafka's serializers write them; `text`: every key and
    /// value as its text (numbers in decimal, composites as Spark prints them).
    format: Option<Format>,
    /// The transactional id prefix (default `spate.<tenant>.<job>.<topic>`); `.task-<task>` is
    /// appended (`0` in a single-process job, `<topic>-<partition>` for a scale-out task).
    transactional_id: Option<Spanned<String>>,
    /// librdkafka settings passed through (`"linger.ms" = 20`, SASL, TLS).
    client: Option<BTreeMap<String, Setting>>,
    /// After each batch's records, an end-of-batch marker in every partition of the topic,
    /// so that a reader knows this writer finished the batch there, counting the records
    /// written there before it (`spate-records`) and naming the batch it wrote before
    /// (`spate-previous`; scale-out's repartition topics; default false).
    end_markers: Option<bool>,
    /// Every record and end-of-batch marker also carries the header `spate-stream` with this
    /// value, so that readers of a topic several streams share tell them apart (scale-out's
    /// repartition topic carrying both sides of a join).
    stream_header: Option<String>,
    /// Every record into this partition of the topic, whatever its key (Flink's
    /// `FlinkFixedPartitioner`; scale-out's partial results of a global aggregation, which
    /// one task combines); default: by key (murmur2), unkeyed records spread.
    partition: Option<Spanned<i32>>,
}

/// What a crash and replay can do to the topic.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Delivery {
    /// One transaction per batch and task; a replayed batch is not written again.
    #[default]
    ExactlyOnce,
    /// No transactions; a replayed batch is written again.
    AtLeastOnce,
}

/// How keys and values are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Format {
    /// Kafka's serializers' encoding of scalar types; composites as text.
    #[default]
    Native,
    /// Text for everything.
    Text,
}

/// The Kafka output.
#[derive(Debug)]
pub struct KafkaOutput {
    bootstrap: String,
    topic: String,
    delivery: Delivery,
    format: Format,
    transactional_id: String,
    client: BTreeMap<String, Setting>,
    end_markers: bool,
    stream_header: Option<String>,
    partition: Option<i32>,
}

/// Reads a Kafka output's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Output>, ConfigError> {
    let fields: Fields = table.fields()?;
    let (bootstrap, client) = brokers_and_client(table, &fields.bootstrap, fields.client)?;
    let topic = table.required("topic", &fields.topic)?.clone();
    let transactional_id = table.per_job_name(
        "transactional-id",
        fields.transactional_id.as_ref(),
        &format!(".{topic}"),
    )?;
    let output = KafkaOutput {
        bootstrap,
        transactional_id,
        topic,
        delivery: fields.delivery.unwrap_or_default(),
        format: fields.format.unwrap_or_default(),
        client,
        end_markers: fields.end_markers.unwrap_or(false),
        stream_header: fields.stream_header,
        partition: match fields.partition {
            Some(p) if *p.get_ref() < 0 => {
                return Err(table.error_at(
                    p.span(),
                    "partition",
                    format!("a partition is 0 or more, not {}", p.get_ref()),
                ));
            }
            p => p.map(Spanned::into_inner),
        },
    };
    output
        .producer_config(TASK)
        .map_err(|e| table.error(format!("kafka output: {e}")))?;
    Ok(Box::new(output))
}

/// The writing task of a single-process job (a scale-out task writes as itself).
const TASK: &str = "0";

impl KafkaOutput {
    fn task_id(&self, task: &str) -> String {
        format!("{}.task-{task}", self.transactional_id)
    }

    /// The client settings every client of the output shares.
    fn client_config(&self) -> Result<rdkafka::ClientConfig, String> {
        client_config(&self.bootstrap, &[("client.id", "spate")], &self.client)
    }

    fn producer_config(&self, task: &str) -> Result<rdkafka::ClientConfig, String> {
        let mut config = self.client_config()?;
        // Kafka's default partitioner (Java clients): murmur2 of the key.
        config.set("partitioner", "murmur2_random");
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "5");
        }
        // A missing topic is an error, not a topic created with the broker's defaults.
        config.set("allow.auto.create.topics", "false");
        config.set("enable.idempotence", "true");
        if self.delivery == Delivery::ExactlyOnce {
            config.set("transactional.id", self.task_id(task));
        }
        Ok(config)
    }
}

impl Output for KafkaOutput {
    fn describe(&self, stream: &str) -> String {
        let guarantee = match self.delivery {
            Delivery::ExactlyOnce => format!(
                "exactly-once: one transaction per batch (transactional id {}, batch marker in \
                 group {0}); consumers read with isolation.level=read_committed",
                self.task_id(TASK)
            ),
            Delivery::AtLeastOnce => {
                "at-least-once: a batch replayed after a crash is written again (dedup by the \
                 spate-batch-time and spate-task headers)"
                    .to_owned()
            }
        };
        format!(
            "kafka '{stream}' to topic '{}' at {} ({:?} format, key murmur2-partitioned); \
             {guarantee}",
            self.topic, self.bootstrap, self.format
        )
    }

    fn replay(&self) -> Replay {
        match self.delivery {
            Delivery::ExactlyOnce => Replay::Replaces,
            Delivery::AtLeastOnce => Replay::Repeats,
        }
    }

    fn remembers_batch_times(&self) -> bool {
        self.delivery == Delivery::ExactlyOnce
    }

    fn commits_offsets_to(&self, group: &OffsetsGroup) -> bool {
        self.delivery == Delivery::ExactlyOnce && same_cluster(&group.bootstrap, &self.bootstrap)
    }

    fn verify(&self, _types: &StreamType) -> Result<Option<String>> {
        let mut config = self.client_config().map_err(|e| anyhow!(e))?;
        // A check creates nothing: no topic from the metadata request.
        config.set("allow.auto.create.topics", "false");
        let producer: BaseProducer<WriterContext> = config
            .create_with_context(WriterContext {
                topic: self.topic.clone(),
                failure: Mutex::new(None),
            })
            .map_err(|e| anyhow!("cannot create a Kafka client: {e}"))?;
        // One try: `spate check` reports what it finds now.
        let partitions = check_topic(
            &producer,
            &self.topic,
            &self.bootstrap,
            (&OutputGauges::default(), Duration::ZERO),
        )?;
        Ok(Some(format!(
            "topic '{}' at {}: {partitions} partitions",
            self.topic, self.bootstrap
        )))
    }

    fn open(&self, context: &OutputContext<'_>, _types: &StreamType) -> Result<Box<dyn Sink>> {
        let task = context.task.unwrap_or(TASK);
        let writer = Writer::open(self, task, context.gauges.clone(), &context.input_offsets)
            .with_context(|| format!("kafka output to topic '{}'", self.topic))?;
        Ok(Box::new(writer))
    }
}

/// A new `spate-attempt`: this process and the time now.
fn new_attempt() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    )
}

/// Delivery failures of the producer, and librdkafka's log lines into Spate's log.
struct WriterContext {
    topic: String,
    failure: Mutex<Option<String>>,
}

impl ClientContext for WriterContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_client_line(&self.connector(), level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&self.connector(), &error, reason);
    }
}

impl WriterContext {
    fn connector(&self) -> String {
        connector(&self.topic)
    }
}

/// The output in log lines.
fn connector(topic: &str) -> String {
    format!("kafka output '{topic}'")
}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| error.to_string());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for WriterContext {}

/// One task's writer.
struct Writer {
    /// The transactional id, which no other writer of the process may use (exactly-once).
    _claim: Option<Claim>,
    topic: String,
    task: String,
    transactional: bool,
    format: Format,
    producer: BaseProducer<WriterContext>,
    /// The marker group's metadata, for the batch marker in each transaction.
    marker: Option<ConsumerGroupMetadata>,
    /// Batches up to this time are committed (read from the marker at open).
    committed_through: Option<u64>,
    /// This try at writing a batch, in the `spate-attempt` header: `<pid>-<µs since the
    /// epoch>`, new for every transaction, so that the records of an aborted try (visible on
    /// a broker without read_committed) are told from those of the try that committed.
    attempt: Mutex<String>,
    /// Where retries are counted.
    gauges: Arc<OutputGauges>,
    /// `end-markers`: the topic's partition count, each getting a marker after each batch.
    end_markers: Option<i32>,
    /// `stream-header`: the `spate-stream` header of every record and marker.
    stream: Option<String>,
    /// `partition`: the one partition every record goes into.
    partition: Option<i32>,
    /// The sources whose offsets each transaction commits to their groups: index in the plan,
    /// and the group's metadata.
    input_groups: Vec<(usize, ConsumerGroupMetadata)>,
    /// Per such source, the offsets (`topic/partition` -> next offset) not committed yet.
    input_offsets: BTreeMap<usize, BTreeMap<String, u64>>,
}

impl Writer {
    fn open(
        output: &KafkaOutput,
        task: &str,
        gauges: Arc<OutputGauges>,
        input_offsets: &[(usize, OffsetsGroup)],
    ) -> Result<Writer> {
        let began = Instant::now();
        let context = || WriterContext {
            topic: output.topic.clone(),
            failure: Mutex::new(None),
        };
        let config = output.producer_config(task).map_err(|e| anyhow!(e))?;
        let producer: BaseProducer<WriterContext> = config
            .create_with_context(context())
            .map_err(|e| anyhow!("cannot create a Kafka producer: {e}"))?;
        let attempt = Mutex::new(new_attempt());
        let transactional = output.delivery == Delivery::ExactlyOnce;
        let claim = transactional
            .then(|| {
                let id = output.task_id(task);
                Claim::take(format!("kafka transactional id {id}")).map_err(|_| {
                    anyhow!(
                        "another output of this job uses transactional id {id} (two outputs to \
                         topic '{}'?): give one of them its own `transactional-id`",
                        output.topic
                    )
                })
            })
            .transpose()?;
        let mut writer = Writer {
            _claim: claim,
            topic: output.topic.clone(),
            task: task.to_owned(),
            transactional,
            format: output.format,
            producer,
            marker: None,
            committed_through: None,
            attempt,
            gauges,
            end_markers: None,
            stream: output.stream_header.clone(),
            partition: output.partition,
            input_groups: Vec::new(),
            input_offsets: BTreeMap::new(),
        };
        let partitions = check_topic(
            &writer.producer,
            &output.topic,
            &output.bootstrap,
            (&writer.gauges, RETRY_FOR),
        )?;
        writer.end_markers = output.end_markers.then_some(partitions as i32);
        if let Some(p) = output.partition.filter(|&p| p as usize >= partitions) {
            bail!(
                "partition {p}: topic '{}' has {partitions} partition(s), numbered from 0",
                output.topic
            );
        }

        if writer.transactional {
            // Fences an earlier run's producer of this id and aborts its open transaction.
            retrying(
                &writer.gauges,
                &connector(&output.topic),
                "starting transactions",
                RETRY_FOR,
                || {
                    writer
                        .producer
                        .init_transactions(Duration::from_secs(30))
                        .map_err(|e| anyhow!("cannot start transactions: {e}"))
                },
            )?;

            let mut config = output.client_config().map_err(|e| anyhow!(e))?;
            config.set("group.id", output.task_id(task));
            let marker: BaseConsumer<WriterContext> = config
                .create_with_context(context())
                .map_err(|e| anyhow!("cannot create the marker client: {e}"))?;
            let mut list = TopicPartitionList::new();
            list.add_partition(&output.topic, 0);
            let committed = marker
                .committed_offsets(list, Duration::from_secs(30))
                .map_err(|e| anyhow!("cannot read the batch marker: {e}"))?;
            writer.committed_through =
                committed
                    .find_partition(&output.topic, 0)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(ms) if ms >= 0 => Some(ms as u64),
                        _ => None,
                    });
            writer.marker = marker.group_metadata();
            for (source, group) in input_offsets {
                // A client of the source's group, for its metadata: the transaction commits
                // the source's offsets there.
                let mut config = output.client_config().map_err(|e| anyhow!(e))?;
                config.set("group.id", &group.group);
                let client: BaseConsumer<WriterContext> =
                    config.create_with_context(context()).map_err(|e| {
                        anyhow!("cannot create a client of group '{}': {e}", group.group)
                    })?;
                // The source leaves these offsets to this output: without the group's metadata
                // nobody would commit them.
                let metadata = client.group_metadata().ok_or_else(|| {
                    anyhow!("no consumer group metadata for group '{}'", group.group)
                })?;
                writer.input_groups.push((*source, metadata));
                tracing::info!(
                    "kafka output '{}': each batch's transaction also commits the input offsets \
                     of group '{}'",
                    output.topic,
                    group.group
                );
            }
        }
        tracing::info!(
            "kafka output '{}': ready in {} ms ({}){}",
            output.topic,
            began.elapsed().as_millis(),
            match writer.transactional {
                true => format!("transactional id {}", output.task_id(task)),
                false => "at-least-once".to_owned(),
            },
            writer.committed_through.map_or(String::new(), |t| format!(
                "; batches up to {t} ms are committed"
            ))
        );
        Ok(writer)
    }

    /// Produces every record of the batch (waiting while librdkafka's queue is full).
    fn produce(&self, time_ms: u64, partitions: &[Partition], types: &StreamType) -> Result<()> {
        let time = time_ms.to_string();
        let attempt = self
            .attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let task = self.task.as_str();
        let mut headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: "spate-batch-time",
                value: Some(&time),
            })
            .insert(Header {
                key: "spate-task",
                value: Some(task),
            })
            .insert(Header {
                key: "spate-attempt",
                value: Some(&attempt),
            });
        if let Some(stream) = &self.stream {
            headers = headers.insert(Header {
                key: STREAM_HEADER,
                value: Some(stream.as_str()),
            });
        }
        let (mut key, mut value) = (Vec::new(), Vec::new());
        // With end markers, each record's partition is chosen here, as Kafka's partitioner
        // would (murmur2 of the key; unkeyed records in turn) unless `partition` fixes it, to
        // count what each marker follows.
        let mut written = vec![0u64; self.end_markers.unwrap_or(0).max(0) as usize];
        let mut unkeyed = 0u64;
        for partition in partitions {
            for record in partition.records() {
                value.clear();
                encode(self.format, record.value, &types.value, &mut value);
                let mut message = BaseRecord::to(&self.topic)
                    .payload(&value[..])
                    .headers(headers.clone());
                if let (Some(k), Some(shape)) = (record.key, &types.key) {
                    key.clear();
                    encode(self.format, k, shape, &mut key);
                    message = message.key(&key[..]);
                }
                if !written.is_empty() {
                    let count = written.len() as i32;
                    let chosen = match (self.partition, message.key) {
                        (Some(fixed), _) => fixed,
                        (None, Some(key)) => murmur2_partition(key, count),
                        (None, None) => {
                            unkeyed += 1;
                            (unkeyed % count as u64) as i32
                        }
                    };
                    written[chosen as usize] += 1;
                    message = message.partition(chosen);
                } else if let Some(fixed) = self.partition {
                    message = message.partition(fixed);
                }
                if let Some(ms) = record.timestamp {
                    message = message.timestamp(ms);
                }
                self.send(message)?;
            }
        }
        // The batch written before this one, which the markers name so that a reader knows
        // it has every batch of this writer (at a restart, the last one committed).
        let previous = self.committed_through.map(|t| t.to_string());
        for (partition, records) in written.iter().enumerate() {
            let records = records.to_string();
            let mut end = headers
                .clone()
                .insert(Header {
                    key: END_HEADER,
                    value: Some("1"),
                })
                .insert(Header {
                    key: RECORDS_HEADER,
                    value: Some(&records),
                });
            if let Some(previous) = &previous {
                end = end.insert(Header {
                    key: PREVIOUS_HEADER,
                    value: Some(previous),
                });
            }
            self.send(
                BaseRecord::<(), [u8]>::to(&self.topic)
                    .payload(&[][..])
                    .partition(partition as i32)
                    .headers(end),
            )?;
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Hands one record to the producer, waiting while its queue is full.
    fn send<K, P>(&self, mut message: BaseRecord<'_, K, P>) -> Result<()>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => bail!("cannot produce to topic '{}': {e}", self.topic),
            }
        }
    }

    fn take_failure(&self) -> Option<String> {
        let mut failure = self
            .producer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failure.take()
    }

    /// One try at writing the batch in a transaction with its marker; aborted if it fails.
    fn write_transaction(
        &self,
        time_ms: u64,
        partitions: &[Partition],
        types: &StreamType,
    ) -> Result<()> {
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner()) = new_attempt();
        let result = (|| {
            // After a failed try (the brokers away) the abort may itself have failed: the
            // begin then fails too, and the abort below runs again.
            self.producer
                .begin_transaction()
                .map_err(transaction_error)?;
            self.produce(time_ms, partitions, types)?;
            for (source, metadata) in &self.input_groups {
                let Some(offsets) = self.input_offsets.get(source) else {
                    continue;
                };
                let mut list = TopicPartitionList::new();
                for (name, next) in offsets {
                    if let Some((topic, partition)) = parse_part_name(name) {
                        list.add_partition_offset(topic, partition, Offset::Offset(*next as i64))?;
                    }
                }
                if list.count() == 0 {
                    continue;
                }
                self.producer
                    .send_offsets_to_transaction(&list, metadata, Duration::from_secs(30))
                    .map_err(transaction_error)?;
            }
            if let Some(marker) = &self.marker {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&self.topic, 0, Offset::Offset(time_ms as i64))?;
                self.producer
                    .send_offsets_to_transaction(&list, marker, Duration::from_secs(30))
                    .map_err(transaction_error)?;
            }
            self.producer
                .commit_transaction(Duration::from_secs(60))
                .map_err(transaction_error)
        })();
        if result.is_err() {
            let _ = self.producer.abort_transaction(Duration::from_secs(30));
        }
        result
    }
}

/// A transaction error: [`Permanent`] when trying again cannot mend it (the producer was
/// fenced by a newer one of the same transactional id, another run of the job, or its state is
/// broken).
fn transaction_error(error: KafkaError) -> anyhow::Error {
    match &error {
        KafkaError::Transaction(e) if e.is_fatal() => Permanent(anyhow!(
            "{error} (another run of this job with the same transactional id took over?)"
        ))
        .into(),
        _ => error.into(),
    }
}

impl Sink for Writer {
    fn write(&mut self, time_ms: u64, partitions: &[Partition], types: &StreamType) -> Result<()> {
        if self.committed_through.is_some_and(|t| time_ms <= t) {
            tracing::info!(
                "kafka output '{}': batch {time_ms} ms was committed before the restart; not \
                 written again",
                self.topic
            );
            return Ok(());
        }
        if self.transactional {
            // The closure borrows the writer; the gauges are shared.
            let gauges = self.gauges.clone();
            retrying(
                &gauges,
                &connector(&self.topic),
                "writing the batch",
                RETRY_FOR,
                || self.write_transaction(time_ms, partitions, types),
            )
            .with_context(|| format!("transaction of batch {time_ms} ms to '{}'", self.topic))?;
            self.committed_through = Some(time_ms);
            self.input_offsets.clear();
        } else {
            self.produce(time_ms, partitions, types)?;
            self.producer
                .flush(Duration::from_secs(300))
                .map_err(|e| anyhow!("cannot deliver batch {time_ms} ms: {e}"))?;
        }
        if let Some(failure) = self.take_failure() {
            bail!(
                "records of batch {time_ms} ms were not delivered to topic '{}': {failure}",
                self.topic
            );
        }
        Ok(())
    }

    fn written_through(&self) -> Option<u64> {
        self.committed_through
    }

    fn input_progress(&mut self, progress: &[(usize, Progress)]) {
        for (source, progress) in progress {
            if let Progress::Part { name, next } = progress
                && self.input_groups.iter().any(|(s, _)| s == source)
            {
                self.input_offsets
                    .entry(*source)
                    .or_default()
                    .insert(name.clone(), *next);
            }
        }
    }
}

/// The topic must exist (Spate does not create topics: partition count and retention are the
/// operator's choice); returns its partition count. The brokers are tried for `retry_for`,
/// each retry counted in `gauges`.
fn check_topic(
    producer: &BaseProducer<WriterContext>,
    topic: &str,
    bootstrap: &str,
    (gauges, retry_for): (&OutputGauges, Duration),
) -> Result<usize> {
    let metadata = retrying(
        gauges,
        &connector(topic),
        "reaching the brokers",
        retry_for,
        || {
            producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| {
                anyhow!(
                    "cannot reach the Kafka brokers at {bootstrap} ({e}): is the broker running, \
                     and is `bootstrap` right?"
                )
            })
        },
    )?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        bail!("topic '{topic}' does not exist at {bootstrap} (create it first)");
    }
    Ok(partitions)
}

/// Appends a key or value of shape `shape` as the output's format writes it.
fn encode(format: Format, value: &[u8], shape: &Shape, out: &mut Vec<u8>) {
    match (format, shape) {
        (Format::Native, Shape::Scalar(t)) => Encoding::of(*t).encode_into(value, out),
        _ => {
            let mut text = String::new();
            write_value(&mut text, value, shape);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_kafka_serializers_or_as_text() {
        let mut out = Vec::new();
        encode(Format::Native, &7i64.to_le_bytes(), &Shape::I64, &mut out);
        assert_eq!(out, 7i64.to_be_bytes());
        out.clear();
        encode(Format::Text, &7i64.to_le_bytes(), &Shape::I64, &mut out);
        assert_eq!(out, b"7");
        out.clear();
        encode(Format::Native, b"word", &Shape::TEXT, &mut out);
        assert_eq!(out, b"word");
    }
}
