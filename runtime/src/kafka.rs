//! What the Kafka source and the Kafka output share: the client settings of a pipeline table
//! (`bootstrap`, `[...client]` passed through to librdkafka, secrets from the environment or a
//! file), how record keys and values are encoded in Kafka, and the wording of client errors.

use crate::config::{ConfigError, ConnectorTable};
use crate::secret::SecretRef;
use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;
use spate_guest::ValueType;
use std::collections::BTreeMap;
use std::fmt;

/// One `[...client]` setting: a literal, or a secret read from the environment or a file so
/// that it never has to be written in the pipeline file.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    /// `"sasl.username" = "spate"`.
    Text(String),
    /// `"fetch.min.bytes" = 1`.
    Integer(i64),
    /// `"enable.ssl.certificate.verification" = false`.
    Bool(bool),
    /// `"sasl.password" = { env = "KAFKA_PASSWORD" }` or `{ file = "/run/secrets/kafka" }`.
    Secret(SecretRef),
}

/// Client settings a connector fixes itself: a user may not override them, since exactly-once
/// and Spate's own offset tracking depend on them.
const FIXED: &[&str] = &[
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "transactional.id",
    "group.id",
    "auto.offset.reset",
    "enable.partition.eof",
    "allow.auto.create.topics",
];

/// Client settings a pipeline under a policy may pass (or start with, for the ones ending in
/// `.`): tuning, and the TLS and SASL credentials of the listed brokers. Everything else is
/// refused there: librdkafka can load libraries (`plugin.library.paths`), run commands
/// (`sasl.kerberos.kinit.cmd`) and reach other endpoints (OAuth token URLs).
const SAFE_UNDER_POLICY: &[&str] = &[
    "acks",
    "api.version.",
    "batch.",
    "broker.version.fallback",
    "check.crcs",
    "client.id",
    "client.rack",
    "compression.",
    "connections.max.idle.ms",
    "delivery.timeout.ms",
    "enable.ssl.certificate.verification",
    "fetch.",
    "heartbeat.interval.ms",
    "isolation.level",
    "linger.ms",
    "max.in.flight",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "message.",
    "metadata.max.age.ms",
    "partitioner",
    "queue.",
    "queued.",
    "receive.message.max.bytes",
    "reconnect.backoff.",
    "request.",
    "retries",
    "retry.backoff.",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.password",
    "sasl.username",
    "security.protocol",
    "session.timeout.ms",
    "socket.",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.location",
    "ssl.key.password",
    "topic.metadata.",
    "transaction.timeout.ms",
];

/// A Kafka table's `bootstrap` (required) and `client` settings, as the policy, if any, lets
/// the pipeline use them.
pub fn brokers_and_client(
    table: &ConnectorTable<'_>,
    bootstrap: &Option<toml::Spanned<String>>,
    client: Option<BTreeMap<String, Setting>>,
) -> Result<(String, BTreeMap<String, Setting>), ConfigError> {
    let brokers = table.required("bootstrap", bootstrap)?.clone();
    let span = bootstrap.as_ref().map_or(0..0, toml::Spanned::span);
    let client = confine_client(table, (&brokers, span), client.unwrap_or_default())?;
    Ok((brokers, client))
}

/// The table's `bootstrap` (field at `span`) and `client` settings as a pipeline under a
/// policy may use them: every broker listed among the policy's endpoints, only settings on
/// the safe list, files (`*.location`, secrets) inside the data root. Without a policy, they
/// are returned as they are.
fn confine_client(
    table: &ConnectorTable<'_>,
    (bootstrap, span): (&str, std::ops::Range<usize>),
    client: BTreeMap<String, Setting>,
) -> Result<BTreeMap<String, Setting>, ConfigError> {
    if table.policy().is_none() {
        return Ok(client);
    }
    for broker in bootstrap.split(',').map(str::trim) {
        let (host, port) = broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse().ok()?)))
            .ok_or_else(|| {
                table.error_at(
                    span.clone(),
                    "bootstrap",
                    format!("'{broker}' is not host:port"),
                )
            })?;
        table.endpoint(span.clone(), "bootstrap", host, port)?;
    }
    let mut confined = BTreeMap::new();
    for (key, setting) in client {
        let field = format!("client.\"{key}\"");
        let safe = SAFE_UNDER_POLICY
            .iter()
            .any(|s| key == *s || (s.ends_with('.') && key.starts_with(s)));
        if !safe {
            return Err(table.error(format!(
                "client setting \"{key}\" is not allowed under the policy (tuning, TLS and \
                 SASL credentials are; see docs/SECURITY.md)"
            )));
        }
        // Settings keep no place in the file: their errors point at the table.
        let at_table = |e: ConfigError| table.error(format!("{field}: {}", e.message));
        let setting = match setting {
            Setting::Text(path) if key.ends_with(".location") => {
                let path = toml::Spanned::new(0..0, path);
                Setting::Text(table.host_path(&field, &path).map_err(at_table)?)
            }
            Setting::Secret(secret) => {
                Setting::Secret(table.secret(0..0, &field, &secret).map_err(at_table)?)
            }
            other => other,
        };
        confined.insert(key, setting);
    }
    Ok(confined)
}

/// A librdkafka configuration for `bootstrap` with the table's `client` settings on top of
/// `defaults`; an error names a setting that is fixed or cannot be read.
pub fn client_config(
    bootstrap: &str,
    defaults: &[(&str, &str)],
    client: &BTreeMap<String, Setting>,
) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::new();
    // librdkafka's own lines reach Spate's log through the connectors' client contexts.
    config.set_log_level(RDKafkaLogLevel::Warning);
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, setting) in client {
        if FIXED.contains(&key.as_str()) {
            return Err(format!(
                "client setting \"{key}\" is set by Spate (use the connector's own fields)"
            ));
        }
        let value = match setting {
            Setting::Text(text) => text.clone(),
            Setting::Integer(n) => n.to_string(),
            Setting::Bool(b) => b.to_string(),
            Setting::Secret(secret) => secret.read(&format!("client setting \"{key}\""))?,
        };
        config.set(key, value);
    }
    // librdkafka drops lines below the client's log level before any context sees them: a
    // user who asks for its debug contexts (`debug = "cgrp"`) gets them, at Spate's `debug`
    // level (SPATE_LOG=info,spate::kafka=debug).
    if client.contains_key("debug") {
        config.set_log_level(RDKafkaLogLevel::Debug);
    }
    Ok(config)
}

/// How a key or value is encoded in Kafka (`key-type`, `value-type`), and so the Spate type of
/// the column it becomes.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// UTF-8 text (Kafka's StringSerializer); checked when read.
    #[default]
    Text,
    /// Any bytes (ByteArraySerializer).
    Bytes,
    /// A 64-bit integer, 8 bytes big-endian (LongSerializer).
    I64,
    /// A 64-bit float, 8 bytes big-endian (DoubleSerializer).
    F64,
}

impl Encoding {
    /// The Spate value type of the column.
    pub fn value_type(self) -> ValueType {
        match self {
            Encoding::Text => ValueType::Text,
            Encoding::Bytes => ValueType::Bytes,
            Encoding::I64 => ValueType::I64,
            Encoding::F64 => ValueType::F64,
        }
    }

    /// The encoding that writes a Spate value type as Kafka's standard serializer does.
    pub fn of(value_type: ValueType) -> Encoding {
        match value_type {
            ValueType::Text => Encoding::Text,
            ValueType::Bytes => Encoding::Bytes,
            ValueType::I64 => Encoding::I64,
            ValueType::F64 => Encoding::F64,
        }
    }

    /// Appends Kafka bytes `raw` (none for a null key or value) to `out` as Spate encodes the
    /// type; an error says what is wrong with them.
    pub fn decode_into(self, raw: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), String> {
        let raw = raw.unwrap_or_default();
        match self {
            Encoding::Bytes => out.extend_from_slice(raw),
            Encoding::Text => match std::str::from_utf8(raw) {
                Ok(_) => out.extend_from_slice(raw),
                Err(e) => return Err(format!("not UTF-8 text ({e})")),
            },
            Encoding::I64 | Encoding::F64 => {
                let bytes: [u8; 8] = raw.try_into().map_err(|_| {
                    format!(
                        "{} bytes, not the 8 of a big-endian {}",
                        raw.len(),
                        self.name()
                    )
                })?;
                // Spate's scalars are little-endian; Kafka's serializers write big-endian.
                out.extend(bytes.iter().rev());
            }
        }
        Ok(())
    }

    /// Appends Spate's encoding of the type, `value`, to `out` as Kafka's serializer writes it.
    pub fn encode_into(self, value: &[u8], out: &mut Vec<u8>) {
        match self {
            Encoding::Text | Encoding::Bytes => out.extend_from_slice(value),
            Encoding::I64 | Encoding::F64 => out.extend(value.iter().rev()),
        }
    }

    /// The name in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Text => "text",
            Encoding::Bytes => "bytes",
            Encoding::I64 => "i64",
            Encoding::F64 => "f64",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A librdkafka log line in Spate's log, naming the connector (`kafka source 'lines'`):
/// errors and warnings as they are, the rest at debug level.
pub fn log_client_line(connector: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!("{connector}: {facility}: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!("{connector}: {facility}: {message}"),
        _ => tracing::debug!("{connector}: {facility}: {message}"),
    }
}

/// A librdkafka client error event in Spate's log. The end of a partition is reported as an
/// error event too; it is no error, and is left out.
pub fn log_client_error(connector: &str, error: &KafkaError, reason: &str) {
    let end = matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    );
    if !end {
        tracing::warn!("{connector}: {error}: {reason}");
    }
}

/// The type of a stream of Kafka records whose keys (if any) and values are so encoded.
pub fn stream_type(key: Option<Encoding>, value: Encoding) -> crate::record::StreamType {
    use crate::record::{Shape, StreamType};
    let value = Shape::Scalar(value.value_type());
    match key {
        Some(key) => StreamType::keyed(Shape::Scalar(key.value_type()), value),
        None => StreamType { key: None, value },
    }
}

/// The header of an end-of-batch marker (the Kafka output's `end-markers`): the writer
/// (`spate-task`) finished batch `spate-batch-time` in this partition.
pub const END_HEADER: &str = "spate-end";

/// The header of an end-of-batch marker counting the records the writer's attempt wrote into
/// the marker's partition before it, so that a reader takes an attempt only once it has read
/// all of them: a broker that shows records of transactions that never committed may show an
/// attempt's marker without all of its records.
pub const RECORDS_HEADER: &str = "spate-records";

/// The header of an end-of-batch marker naming the batch the writer ended before this one
/// (none before its first), so that a reader sees when it missed one of the writer's batches.
pub const PREVIOUS_HEADER: &str = "spate-previous";

/// The partition Kafka's default partitioner gives a record with key `key` among `partitions`
/// (the Java client's murmur2 of the key, made positive, modulo the count; librdkafka's
/// `murmur2_random` for keyed records).
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Kafka's `Utils.murmur2` (seed 0x9747b28c).
fn murmur2(key: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ key.len() as u32;
    let chunks = key.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    for (i, byte) in tail.iter().enumerate().rev() {
        h ^= u32::from(*byte) << (8 * i);
    }
    if !tail.is_empty() {
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The header naming which of the job's streams a record (or end-of-batch marker) belongs to,
/// where one topic carries several (the Kafka output's `stream-header`: the two sides of a
/// join cut at a scale-out repartition topic).
pub const STREAM_HEADER: &str = "spate-stream";

/// A topic's partition as Spate names it in positions and messages: `topic/partition`.
pub fn part_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// A Kafka source's consumer group, where its offsets are committed (for lag tools, and where a
/// job without a checkpoint directory resumes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetsGroup {
    /// The group's id.
    pub group: String,
    /// The cluster's brokers, as the source's `bootstrap` names them: a transaction can
    /// commit offsets to a group of its own cluster only.
    pub bootstrap: String,
}

/// Whether two `bootstrap` lists name one cluster: they share a broker (a broker belongs to
/// one cluster), whatever their order, spacing or host-name case. Lists without a broker in
/// common may still name one cluster; telling that would take asking the brokers for its id.
pub fn same_cluster(a: &str, b: &str) -> bool {
    let brokers = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|broker| broker.trim().to_ascii_lowercase())
            .filter(|broker| !broker.is_empty())
            .collect()
    };
    let theirs = brokers(b);
    brokers(a).iter().any(|broker| theirs.contains(broker))
}

/// The topic and partition of a part name (`topic/partition`).
pub fn parse_part_name(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('/')?;
    Some((topic, partition.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // Kafka's UtilsTest.testMurmur2 cases.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, hash) in cases {
            assert_eq!(
                murmur2(key) as i32,
                hash,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(
            murmur2_partition(b"foobar", 4),
            ((-790332482i32 & 0x7fff_ffff) % 4)
        );
    }

    #[test]
    fn bootstrap_lists_sharing_a_broker_name_one_cluster() {
        assert!(same_cluster("k1:9092,k2:9092", " K2:9092 , k1:9092"));
        assert!(same_cluster("k1:9092", "k3:9092,k1:9092"));
        assert!(!same_cluster("k1:9092", "k1:9093"));
        assert!(!same_cluster("", ""));
    }

    #[test]
    fn integers_are_big_endian_in_kafka_and_little_endian_in_spate() {
        let mut spate = Vec::new();
        Encoding::I64
            .decode_into(Some(&42i64.to_be_bytes()), &mut spate)
            .unwrap();
        assert_eq!(spate, 42i64.to_le_bytes());
        let mut kafka = Vec::new();
        Encoding::I64.encode_into(&spate, &mut kafka);
        assert_eq!(kafka, 42i64.to_be_bytes());
        let err = Encoding::I64.decode_into(Some(b"42"), &mut spate);
        assert_eq!(err.unwrap_err(), "2 bytes, not the 8 of a big-endian i64");
        assert!(
            Encoding::Text
                .decode_into(Some(b"\xff"), &mut spate)
                .is_err()
        );
        let mut empty = Vec::new();
        Encoding::Text.decode_into(None, &mut empty).unwrap();
        assert!(empty.is_empty(), "a null value is empty text");
    }

    #[test]
    fn client_settings_pass_through_except_the_fixed_ones() {
        let mut client = BTreeMap::new();
        client.insert("fetch.min.bytes".to_owned(), Setting::Integer(1));
        client.insert(
            "sasl.password".to_owned(),
            Setting::Secret(SecretRef {
                env: Some("SPATE_TEST_UNSET_VARIABLE".into()),
                file: None,
            }),
        );
        let err = client_config("h:1", &[], &client).unwrap_err();
        assert!(
            err.contains("SPATE_TEST_UNSET_VARIABLE is not set"),
            "{err}"
        );
        client.remove("sasl.password");
        let config = client_config("h:1", &[("linger.ms", "5")], &client).unwrap();
        assert_eq!(config.get("fetch.min.bytes"), Some("1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert!(matches!(config.log_level, RDKafkaLogLevel::Warning));
        client.insert("debug".to_owned(), Setting::Text("cgrp".into()));
        let config = client_config("h:1", &[], &client).unwrap();
        assert!(matches!(config.log_level, RDKafkaLogLevel::Debug));
        client.insert("group.id".to_owned(), Setting::Text("x".into()));
        let err = client_config("h:1", &[], &client).unwrap_err();
        assert!(err.contains("\"group.id\" is set by Spate"), "{err}");
        assert_eq!(parse_part_name("a/b/3"), Some(("a/b", 3)));
        assert_eq!(part_name("t", 7), "t/7");
    }

    #[test]
    fn this_build_takes_tls_and_sasl_and_refuses_kerberos_clearly() {
        use rdkafka::consumer::BaseConsumer;
        let with = |pairs: &[(&str, &str)]| {
            let mut client = BTreeMap::new();
            for (k, v) in pairs {
                client.insert((*k).to_owned(), Setting::Text((*v).to_owned()));
            }
            client_config("127.0.0.1:1", &[], &client)
                .unwrap()
                .create::<BaseConsumer>()
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        with(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ])
        .unwrap();
        with(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ])
        .unwrap();
        with(&[("security.protocol", "SSL")]).unwrap();
        let kerberos = with(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "GSSAPI"),
        ])
        .unwrap_err();
        assert!(kerberos.contains("GSSAPI"), "{kerberos}");
    }
}
