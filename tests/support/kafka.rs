//! A real Kafka-protocol broker for the tests (tansu, installed by
//! `scripts/install-kafka-broker.sh`), started on a free 127.0.0.1 port with an empty
//! in-memory store and stopped on drop; and plain librdkafka clients to create topics, produce
//! input and read everything back.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The broker binary, installed once per test process.
fn broker_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| super::installed("install-kafka-broker.sh"))
        .clone()
}

/// A running broker.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// Clients reach the broker through it when it is there (see [`Broker::start_behind_proxy`]).
    proxy: Option<Proxy>,
    _dir: tempfile::TempDir,
}

/// A TCP forwarder in front of the broker that can cut every connection and refuse new ones
/// for a while: to the clients, the broker is away, as during a restart, while its data stays
/// (the test broker keeps its data in memory only, so a real restart would lose it).
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_down, streams) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if is_down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut list = streams.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, down, open }
    }

    /// Cuts every connection and refuses new ones for `pause`.
    fn cut_for(&self, pause: Duration) {
        self.down.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(pause);
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Broker {
    /// Starts a broker with an empty store on a free port.
    pub fn start() -> Broker {
        Broker::launch(false)
    }

    /// [`Broker::start`], with clients reaching it through a proxy that
    /// [`Broker::cut_for`] can take away.
    pub fn start_behind_proxy() -> Broker {
        Broker::launch(true)
    }

    /// Every client connection is cut and new ones are refused for `pause`, as when the broker
    /// restarts (its data stays).
    pub fn cut_for(&self, pause: Duration) {
        self.proxy
            .as_ref()
            .expect("a broker started behind a proxy")
            .cut_for(pause);
    }

    fn launch(behind_proxy: bool) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let log = dir.path().join("broker.log");
        let mut broker = Broker {
            child: None,
            port,
            log,
            proxy: behind_proxy.then(|| Proxy::start(port)),
            _dir: dir,
        };
        broker.run_process();
        broker
    }

    /// Starts the broker process on its port, with an empty in-memory store.
    fn run_process(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.bootstrap());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(broker_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the broker");
        self.child = Some(child);
        let ready = super::eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(ready, "the broker did not start: {}", self.log());
    }

    /// Stops the broker process.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:port`, as `bootstrap` takes it (the proxy's, if there is one).
    pub fn bootstrap(&self) -> String {
        let port = self.proxy.as_ref().map_or(self.port, |p| p.port);
        format!("127.0.0.1:{port}")
    }

    /// What the broker logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = runtime
            .block_on(admin.create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .unwrap();
        for result in results {
            result.unwrap_or_else(|e| panic!("cannot create topic {topic}: {e:?}"));
        }
        // Metadata can lag the creation for a moment.
        let producer: BaseProducer = self.config().create().unwrap();
        assert!(super::eventually(Duration::from_secs(10), || {
            producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(2))
                .is_ok_and(|m| {
                    m.topics()
                        .iter()
                        .any(|t| t.name() == topic && t.partitions().len() == partitions as usize)
                })
        }));
    }

    /// The names of the broker's topics.
    pub fn topics(&self) -> Vec<String> {
        let producer: BaseProducer = self.config().create().unwrap();
        let metadata = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .collect()
    }

    /// A producer for test input (idempotent, Kafka's default partitioner).
    pub fn producer(&self) -> BaseProducer {
        Broker::producer_for(&self.bootstrap())
    }

    /// [`Broker::producer`] for the broker at `bootstrap` (from another thread).
    pub fn producer_for(bootstrap: &str) -> BaseProducer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5");
        config.create().unwrap()
    }

    /// Produces `records` to `topic` (partition chosen by key, if any) and waits for them.
    pub fn produce(&self, topic: &str, records: &[(Option<&[u8]>, &[u8])]) {
        Broker::produce_with(&self.producer(), topic, records);
    }

    /// [`Broker::produce`] with a given producer.
    pub fn produce_with(producer: &BaseProducer, topic: &str, records: &[(Option<&[u8]>, &[u8])]) {
        for (key, value) in records {
            let mut record = BaseRecord::to(topic).payload(*value);
            if let Some(key) = key {
                record = record.key(*key);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(20));
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every record of `topic`, partition by partition, in offset order, those of aborted
    /// and open transactions too (read_uncommitted): the test broker does not hide aborted
    /// records, and a transaction its writer's process left open when SIGKILLed stays open
    /// there, holding a read_committed reader at its first record for good (a Kafka cluster
    /// aborts it when the writer's successor starts); tests tell attempts apart by header.
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        let mut config = self.config();
        config
            .set("group.id", "spate-tests-reader")
            .set("isolation.level", "read_uncommitted")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = config.create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        let mut list = TopicPartitionList::new();
        for p in &partitions {
            // From offset 0, not `Beginning`: the test broker sometimes reports a partition's
            // start past its first transaction's records (docs/KAFKA.md), and nothing is ever
            // deleted from a test topic.
            list.add_partition_offset(topic, *p, Offset::Offset(0))
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut open: BTreeMap<i32, bool> = partitions.iter().map(|p| (*p, true)).collect();
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while open.values().any(|o| *o) {
            assert!(Instant::now() < deadline, "reading {topic} took too long");
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let mut headers = BTreeMap::new();
                    if let Some(h) = m.headers() {
                        for header in h.iter() {
                            headers.insert(
                                header.key.to_owned(),
                                String::from_utf8_lossy(header.value.unwrap_or_default())
                                    .into_owned(),
                            );
                        }
                    }
                    records.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().unwrap_or_default().to_vec(),
                        headers,
                    });
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    open.insert(p, false);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// Where each partition of `topic` that holds records ends (the offset after its last
    /// record), by partition.
    pub fn partition_ends(&self, topic: &str) -> BTreeMap<i32, i64> {
        self.read_all(topic)
            .iter()
            .fold(BTreeMap::new(), |mut ends, r| {
                ends.insert(r.partition, r.offset + 1);
                ends
            })
    }

    /// The offsets `group` has committed for the partitions of `topic` that hold records, as
    /// a lag tool reads them (-1: none).
    pub fn committed_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let mut config = self.config();
        config.set("group.id", group);
        let lag_tool: BaseConsumer = config.create().unwrap();
        let mut list = TopicPartitionList::new();
        for partition in self.partition_ends(topic).keys() {
            list.add_partition(topic, *partition);
        }
        lag_tool
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => (e.partition(), n),
                _ => (e.partition(), -1),
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Word counts of records of (word, i64 big-endian), as Spate's Kafka output writes them.
pub fn counts_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> super::Counts {
    let mut counts = super::Counts::new();
    for r in records {
        let word = String::from_utf8(r.key.clone().expect("a key")).unwrap();
        let n = i64::from_be_bytes(r.value[..].try_into().expect("8 bytes"));
        *counts.entry(word).or_default() += n;
    }
    counts
}

/// A record read back.
#[derive(Clone, Debug)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its headers, as text.
    pub headers: BTreeMap<String, String>,
}

/// Kafka's default partitioner for a keyed record (the Java client's `murmur2`, made
/// positive, modulo the partition count), written from its specification, to check that
/// Spate's output co-partitions with other Kafka clients.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    ((java_murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// The Java client's `Utils.murmur2`.
pub fn java_murmur2(key: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let length = key.len() as u32;
    let mut h = SEED ^ length;
    let chunks = key.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().unwrap());
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}
