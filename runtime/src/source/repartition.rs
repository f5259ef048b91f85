//! `type = "repartition"`: one partition of a scale-out job's repartition topic, read by the
//! reduce task that owns it (docs/SCALE-OUT.md). Every map task (a writer) writes its records
//! of batch T tagged with T (`spate-batch-time`), itself (`spate-task`) and its attempt
//! (`spate-attempt`), then an end-of-batch marker in every partition (`spate-end`; the Kafka
//! output's `end-markers`). This source hands batch T's records to the buffer only once every
//! writer has ended T (a writer that ended a later batch has nothing more for T: a partition
//! keeps each writer's order), and paces the job's batches on that ([`Source::paces_batches`]),
//! so batch T of the reduce task holds batch T of every writer, whatever the processes. A job
//! cut at a join reads each side with a source of its own (`stream`): the writers tag each
//! side's records and markers with `spate-stream`, and the batches wait for both sources.
//!
//! Of a writer's attempts at a batch (a replay after its process died; a broker that shows
//! records of transactions that never committed), the first that ends is taken: replays read
//! the same logged input through deterministic operators, so every attempt holds the same.
//! An attempt ends only whole, and a writer's batches only in a row: each marker counts the
//! records its attempt wrote into the partition (`spate-records`) and names the writer's
//! batch before it (`spate-previous`). A marker whose attempt was not read whole, or whose
//! writer's batch before it was not read here, means records were missed: the test broker's
//! fetch was seen to skip a run of records while transactions were written into the
//! partition (a later read had them; docs/KAFKA.md). The reader then reads the partition again
//! from after that writer's last batch read whole (said in the log), and so a batch is never
//! handed over without a writer's records. Records that are not in the topic at all after
//! three reads fail the task (a gap), or leave the batch waiting for another attempt of that
//! writer (a torn attempt).
//!
//! Position: `topic/partition` is the offset a restart reads again from (the first record of a
//! batch not handed over yet), `topic/partition#batch` the last batch handed over, whose
//! records a restart skips.

use super::kafka::Log;
use super::{ReceiverContext, Source};
use crate::config::{ConfigError, ConnectorTable, Trigger};
use crate::kafka::{
    END_HEADER, Encoding, PREVIOUS_HEADER, RECORDS_HEADER, STREAM_HEADER, Setting,
    brokers_and_client, client_config, part_name,
};
use crate::position::{Progress, SourcePosition};
use crate::record::StreamType;
use anyhow::{Result, anyhow};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use serde::Deserialize;
use spate_guest::Partition;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use toml::Spanned;

/// How often a reduce task that cannot hand its next batch over says why.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(10);

/// The fields of the table (written by scale-out, not by hand).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    bootstrap: Option<Spanned<String>>,
    topic: Option<Spanned<String>>,
    partition: Option<Spanned<i32>>,
    /// How many writers (map tasks) end each batch.
    writers: Option<Spanned<usize>>,
    key_type: Option<Encoding>,
    value_type: Option<Encoding>,
    /// Only the records and markers whose `spate-stream` header is this (the topic carries
    /// both sides of a join); none: every record.
    stream: Option<String>,
    client: Option<BTreeMap<String, Setting>>,
}

/// A repartition topic's partition.
#[derive(Debug)]
pub struct Repartition {
    name: String,
    bootstrap: String,
    topic: String,
    partition: i32,
    writers: usize,
    key: Option<Encoding>,
    value: Encoding,
    stream: Option<String>,
    client: BTreeMap<String, Setting>,
}

/// Reads the table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError> {
    let fields: Fields = table.fields()?;
    let (bootstrap, client) = brokers_and_client(table, &fields.bootstrap, fields.client)?;
    let writers = *table.required("writers", &fields.writers)?;
    if writers == 0 {
        return Err(table.error("repartition source: writers must be at least 1"));
    }
    Ok(Box::new(Repartition {
        name: table.path().trim_start_matches("sources.").to_owned(),
        bootstrap,
        topic: table.required("topic", &fields.topic)?.clone(),
        partition: *table.required("partition", &fields.partition)?,
        writers,
        key: fields.key_type,
        value: fields.value_type.unwrap_or_default(),
        stream: fields.stream,
        client,
    }))
}

impl Repartition {
    fn part(&self) -> String {
        part_name(&self.topic, self.partition)
    }

    fn batch_part(&self) -> String {
        format!("{}#batch", self.part())
    }
}

impl Source for Repartition {
    fn describe(&self) -> String {
        format!(
            "repartition topic partition {}{} at {}: batch by batch, once all {} writers ended it",
            self.part(),
            self.stream
                .as_ref()
                .map_or(String::new(), |s| format!(", stream '{s}'")),
            self.bootstrap,
            self.writers
        )
    }

    fn stream_type(&self) -> StreamType {
        crate::kafka::stream_type(self.key, self.value)
    }

    fn start(&self, _trigger: Trigger) -> Result<Vec<Progress>> {
        Ok(vec![Progress::Part {
            name: self.part(),
            next: 0,
        }])
    }

    fn prune(&self, _position: &mut SourcePosition) {}

    fn paces_batches(&self) -> bool {
        true
    }

    fn receive(&self, context: &ReceiverContext) -> Result<()> {
        let mut config = client_config(&self.bootstrap, &[("client.id", "spate")], &self.client)
            .map_err(|e| anyhow!(e))?;
        config
            .set("group.id", format!("{}.reader", self.topic))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            // Uncommitted records too: an attempt counts only once it ends, and every attempt
            // that ends holds the same (see above), so what read_committed would hide changes
            // nothing here, while its wait for the last stable offset holds every reduce task
            // back behind any transaction left open.
            .set("isolation.level", "read_uncommitted")
            // Where a first read at offset 0 is gone (retention), the partition's start.
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<Log> = config
            .create_with_context(Log {
                source: self.name.clone(),
            })
            .map_err(|e| anyhow!("cannot create a Kafka client: {e}"))?;
        let next = context.resume.parts.get(&self.part()).copied().unwrap_or(0);
        let mut list = TopicPartitionList::new();
        // A first read starts at offset 0, not at the start the broker reports: the test
        // broker sometimes reports one past the first transaction's records (docs/KAFKA.md),
        // which would lose a map task's first batch; on a Kafka cluster the two agree.
        list.add_partition_offset(&self.topic, self.partition, Offset::Offset(next as i64))?;
        consumer.assign(&list)?;
        let handed = context
            .resume
            .parts
            .get(&self.batch_part())
            .copied()
            .unwrap_or(0);
        let mut reader = Reader {
            source: self,
            context,
            batch_ms: context.batch_interval.as_millis().max(1) as u64,
            pending: BTreeMap::new(),
            chains: BTreeMap::new(),
            handed,
            first_of_run: true,
            next: next as i64,
            waiting: None,
            rewind: None,
            rewinds: BTreeMap::new(),
        };
        loop {
            if context.buffer.is_stopping() {
                return Ok(());
            }
            match consumer.poll(Duration::from_millis(50)) {
                None => {}
                Some(Ok(message)) => reader.take(&message)?,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    context.gauges.error(e.to_string());
                    tracing::warn!("repartition source '{}': {e}", self.name);
                }
            }
            if let Some(from) = reader.rewind.take() {
                // Read again from there: what was read of the batches not handed over yet is
                // read anew, so it is dropped.
                reader.read_again_from(from);
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&self.topic, self.partition, Offset::Offset(from))?;
                consumer
                    .seek_partitions(list, Duration::from_secs(10))
                    .map_err(|e| anyhow!("{}: cannot read again from {from}: {e}", self.part()))?;
                continue;
            }
            if !reader.hand_over()? {
                return Ok(());
            }
        }
    }
}

/// A batch's records as read so far.
#[derive(Default)]
struct Pending {
    /// Per writer and attempt, records of attempts not ended yet.
    attempts: BTreeMap<(String, String), Partition>,
    /// Per writer that ended the batch, the records of the attempt that ended it.
    ended: BTreeMap<String, Partition>,
    /// Per writer whose last attempt to end the batch was not whole (not all the records its
    /// marker counts were read): the attempt, the records counted and those read.
    torn: BTreeMap<String, (String, u64, usize)>,
    /// The offset of the batch's first record (a restart reads again from there).
    first_offset: i64,
}

struct Reader<'a> {
    source: &'a Repartition,
    context: &'a ReceiverContext,
    batch_ms: u64,
    /// Batches not handed over yet, by batch time.
    pending: BTreeMap<u64, Pending>,
    /// Per writer, the latest batch up to which every batch it wrote has ended here (each
    /// marker names the writer's batch before it), and the offset of that batch's marker.
    chains: BTreeMap<String, (u64, i64)>,
    /// The latest batch handed over.
    handed: u64,
    /// The next hand-over is the first of this run.
    first_of_run: bool,
    /// Since when no batch could be handed over, and when that was last logged.
    waiting: Option<(Instant, Instant)>,
    /// The offset after the last record read.
    next: i64,
    /// Where to read again from: records of a writer's batch were missed (see
    /// [`Reader::missed`]).
    rewind: Option<i64>,
    /// How many times the partition was read again for a writer's batch.
    rewinds: BTreeMap<(String, u64), usize>,
}

/// How many times a reader reads its partition again for one writer's batch it missed before
/// it gives up on it.
const MAX_READS_AGAIN: usize = 3;

/// An end-of-batch marker as read.
struct EndMarker {
    writer: String,
    attempt: String,
    time: u64,
    /// The writer's batch before this one (`spate-previous`), if it says.
    previous: Option<u64>,
    /// The records its attempt wrote into the partition (`spate-records`), if it says.
    counted: Option<u64>,
    offset: i64,
}

impl Reader<'_> {
    fn take(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) -> Result<()> {
        let offset = message.offset();
        self.next = offset + 1;
        // The batch headers, read in one pass over the record's headers.
        let (mut time, mut writer, mut attempt, mut end) = (None, None, "", false);
        let (mut stream, mut counted, mut previous) = (None, None, None);
        for h in message.headers().iter().flat_map(|headers| headers.iter()) {
            let value = h.value.and_then(|v| std::str::from_utf8(v).ok());
            match h.key {
                "spate-batch-time" => time = value.and_then(|t| t.parse::<u64>().ok()),
                "spate-task" => writer = value,
                "spate-attempt" => attempt = value.unwrap_or_default(),
                key if key == END_HEADER => end = true,
                key if key == STREAM_HEADER => stream = value,
                key if key == RECORDS_HEADER => counted = value.and_then(|n| n.parse::<u64>().ok()),
                key if key == PREVIOUS_HEADER => {
                    previous = value.and_then(|t| t.parse::<u64>().ok())
                }
                _ => {}
            }
        }
        if self.source.stream.is_some() && stream != self.source.stream.as_deref() {
            // The other side of the join, which the topic carries too.
            return Ok(());
        }
        let where_ = || format!("{} offset {offset}", self.source.part());
        let time =
            time.ok_or_else(|| anyhow!("{}: a record without spate-batch-time", where_()))?;
        let writer = writer
            .ok_or_else(|| anyhow!("{}: a record without spate-task", where_()))?
            .to_owned();
        let attempt = attempt.to_owned();
        if end {
            return self.take_end(EndMarker {
                writer,
                attempt,
                time,
                previous,
                counted,
                offset,
            });
        }
        if time <= self.handed {
            // A batch handed over already: a replay's records, or read again after a restart.
            return Ok(());
        }
        let key_encoding = self.source.key;
        let batch = pending_batch(&mut self.pending, time, offset);
        if batch.ended.contains_key(&writer) {
            return Ok(());
        }
        let records = batch
            .attempts
            .entry((writer, attempt))
            .or_insert_with(|| empty(key_encoding));
        if let (Some(encoding), Some(keys)) = (key_encoding, records.keys.as_mut()) {
            encoding
                .decode_into(message.key(), keys.begin_value())
                .map_err(|e| anyhow!("{}: key: {e}", where_()))?;
            keys.end_value();
        }
        self.source
            .value
            .decode_into(message.payload(), records.values.begin_value())
            .map_err(|e| anyhow!("{}: value: {e}", where_()))?;
        records.values.end_value();
        let time = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms,
            Timestamp::NotAvailable => time as i64,
        };
        records.timestamps.push(time);
        Ok(())
    }

    /// An end-of-batch marker: the writer's attempt ends its batch here if every batch the
    /// writer wrote before it has ended here too and the attempt is whole; else the records
    /// of the writer's batch were missed, and are read again.
    fn take_end(&mut self, marker: EndMarker) -> Result<()> {
        let EndMarker {
            writer,
            time,
            attempt,
            ..
        } = &marker;
        let (time, offset) = (*time, marker.offset);
        if time <= self.handed {
            // Its batches up to this one are done.
            self.extend_chain(writer, time, offset);
            return Ok(());
        }
        let linked = match (marker.previous, self.chains.get(writer)) {
            (None, _) => true,
            (Some(before), _) if before <= self.handed => true,
            (Some(before), Some(&(chained, _))) => before <= chained,
            // A task that never handed a batch over takes a writer from the first marker it
            // reads of it (the topic's start, or what retention left of it); read again, the
            // partition is read from that marker or before (see `missed`).
            (Some(_), None) => self.handed == 0,
        };
        let key_encoding = self.source.key;
        let batch = pending_batch(&mut self.pending, time, offset);
        if batch.ended.contains_key(writer) {
            // A later attempt at a batch ended already.
            return Ok(());
        }
        if !linked {
            let before = marker.previous.unwrap_or_default();
            return self.missed(
                writer,
                time,
                format!("its batch {time} follows its batch {before}, which was not read here"),
                true,
            );
        }
        let records = batch
            .attempts
            .remove(&(writer.clone(), attempt.clone()))
            .unwrap_or_else(|| empty(key_encoding));
        if let Some(counted) = marker.counted.filter(|&n| n != records.len() as u64) {
            let read = records.len();
            batch
                .torn
                .insert(writer.clone(), (attempt.clone(), counted, read));
            return self.missed(
                writer,
                time,
                format!(
                    "attempt {attempt} ended batch {time} with {counted} records, of which \
                     {read} were read: not taken"
                ),
                false,
            );
        }
        batch.attempts.retain(|(w, _), _| w != writer);
        batch.torn.remove(writer);
        batch.ended.insert(writer.clone(), records);
        self.extend_chain(writer, time, offset);
        Ok(())
    }

    /// `writer`'s batches up to `time` (whose marker is at `offset`) have all ended here.
    /// Of several markers of one batch (attempts), the first read is kept: reading again from
    /// after it cannot miss what the writer wrote next.
    fn extend_chain(&mut self, writer: &str, time: u64, offset: i64) {
        let chain = self
            .chains
            .entry(writer.to_owned())
            .or_insert((time, offset));
        if time > chain.0 {
            *chain = (time, offset);
        }
    }

    /// Records of `writer`'s batches up to `time` were missed (`what`): the fetch skipped
    /// some (the test broker's fetch was seen to skip records while transactions were being
    /// written into the partition; a later read had them), so the partition is read again
    /// from after the writer's last batch read whole, at most [`MAX_READS_AGAIN`] times per
    /// batch. Then a gap (`fail`) fails the task: the records are not in the topic
    /// (retention deleted them before this task read them?); a torn attempt waits for another
    /// attempt of its writer.
    fn missed(&mut self, writer: &str, time: u64, what: String, fail: bool) -> Result<()> {
        let part = self.source.part();
        let name = &self.source.name;
        let tries = self.rewinds.entry((writer.to_owned(), time)).or_default();
        *tries += 1;
        if *tries > MAX_READS_AGAIN {
            if fail {
                anyhow::bail!(
                    "repartition source '{name}': {part}: writer {writer}: {what}, still after \
                     reading the partition again {MAX_READS_AGAIN} times: the writer's records \
                     are not in the topic (deleted by retention before this task read them?)"
                );
            }
            tracing::warn!(
                "repartition source '{name}': {part}: writer {writer}: {what}; the batch waits \
                 for a whole attempt of that writer"
            );
            return Ok(());
        }
        let after_chain = self.chains.get(writer).map_or(0, |&(_, offset)| offset + 1);
        let from = (self.pending.values())
            .map(|p| p.first_offset)
            .fold(after_chain, i64::min);
        tracing::warn!(
            "repartition source '{name}': {part}: writer {writer}: {what}; reading the \
             partition again from offset {from}"
        );
        self.rewind = Some(from);
        Ok(())
    }

    /// Forgets what was read of the batches not handed over yet, to read them again from
    /// offset `from`: every marker read of them is at `from` or after (their first records
    /// are), so the writers' chains are read again too, from what was handed over.
    fn read_again_from(&mut self, from: i64) {
        self.pending.clear();
        self.chains.clear();
        self.next = from;
        self.waiting = None;
    }

    /// Says, every [`WAIT_LOG_EVERY`] while no batch can be handed over, what it waits for:
    /// the writers that have not ended batch `time`, or (`None`) any record at all. A map
    /// task that stopped writing, or a partition that stopped being readable, holds the
    /// reduce task back.
    fn log_waiting(&mut self, time: Option<u64>) {
        let now = Instant::now();
        let (since, logged) = self.waiting.get_or_insert((now, now));
        if now.duration_since(*logged) < WAIT_LOG_EVERY {
            return;
        }
        *logged = now;
        let waited = now.duration_since(*since).as_secs_f64();
        let name = &self.source.name;
        let Some(time) = time else {
            tracing::info!(
                "repartition source '{name}': nothing to hand over for {waited:.0} s: no \
                 record of a batch after {} read (offset {})",
                self.handed,
                self.next
            );
            return;
        };
        let torn = self.pending.get(&time).map(|p| &p.torn);
        let behind: Vec<String> = (self.chains.iter())
            .filter(|(writer, (chained, _))| {
                *chained < time || torn.is_some_and(|t| t.contains_key(*writer))
            })
            .map(
                |(writer, (chained, _))| match torn.and_then(|t| t.get(writer)) {
                    Some((attempt, counted, read)) => format!(
                        "{writer} (attempt {attempt} torn: {counted} records counted, {read} read)"
                    ),
                    None => format!("{writer} (ended {chained})"),
                },
            )
            .collect();
        tracing::info!(
            "repartition source '{name}': batch {time} has waited {waited:.0} s for its \
             writers: {} of {} heard from; behind: [{}]",
            self.chains.len(),
            self.source.writers,
            behind.join(", ")
        );
    }

    /// Hands over, in order, every batch every writer has ended; false when the job stops.
    fn hand_over(&mut self) -> Result<bool> {
        loop {
            let Some((&time, _)) = self.pending.first_key_value() else {
                self.log_waiting(None);
                return Ok(true);
            };
            // Every writer's batches up to this one have ended here, in a row (see
            // `take_end`), and no attempt at this one is torn.
            let all_ended = self.chains.len() >= self.source.writers
                && self.chains.values().all(|&(chained, _)| chained >= time)
                && self.pending[&time].torn.is_empty();
            if !all_ended {
                self.log_waiting(Some(time));
                return Ok(true);
            }
            self.waiting = None;
            if self.first_of_run {
                // A task that never handed a batch over starts at the writers' first batch.
                self.first_of_run = false;
                let resumed = self.handed > 0;
                self.context.buffer.first_handover(
                    self.context.index,
                    time,
                    self.batch_ms,
                    resumed,
                );
            }
            // The batches before this one have nothing: the clock may form them empty.
            let index = self.context.index;
            self.context
                .buffer
                .complete_through(index, time - self.batch_ms);
            if !self
                .context
                .buffer
                .wait_for_batches_before(time, self.batch_ms)
            {
                return Ok(false);
            }
            let batch = self.pending.remove(&time).unwrap_or_default();
            let restart_at = self
                .pending
                .values()
                .map(|p| p.first_offset)
                .min()
                .unwrap_or(self.next);
            let buffer = &self.context.buffer;
            for (_, mut records) in batch.ended {
                if !buffer.push_records(index, 0, &mut records, None) {
                    return Ok(false);
                }
            }
            let positions = [
                (self.source.part(), restart_at.max(0) as u64),
                (self.source.batch_part(), time),
            ];
            for (name, next) in positions {
                let progress = Progress::Part { name, next };
                if !buffer.push_records(index, 0, &mut empty(None), Some(progress)) {
                    return Ok(false);
                }
            }
            self.handed = time;
            self.rewinds.retain(|(_, missed), _| *missed > time);
            buffer.complete_through(index, time);
        }
    }
}

/// Batch `time` of `pending` as read so far, begun at `offset` if this is its first record
/// read.
fn pending_batch(pending: &mut BTreeMap<u64, Pending>, time: u64, offset: i64) -> &mut Pending {
    pending.entry(time).or_insert_with(|| Pending {
        first_offset: offset,
        ..Default::default()
    })
}

fn empty(key: Option<Encoding>) -> Partition {
    Partition {
        keys: key.map(|_| Default::default()),
        ..Default::default()
    }
}
