//! A test operator for the sandbox tests: it misbehaves, on every `process` call (so on every
//! partition, empty ones included), in the way its `attack` parameter names.
//!
//! Attacks that the sandbox should stop without the operator's help (`loop`, `memory-bomb`,
//! `recursion`, `flood`, `emit`, `panic`) never return an error. Attacks on capabilities the
//! host may deny (`read-file`, `list-dir`, `write-file`, `connect`, `env`) emit what they got
//! when the capability is granted, and otherwise fail with an error of the form
//! `<attack> <target> refused: <cause>`. `clock` emits the wall clock and a value seeded from
//! WASI randomness, so that a test can tell whether those are deterministic.

use spate_guest::{Error, Info, Params, Partition, PartitionBuilder, Transform};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Every accepted value of the `attack` parameter, in the order of the help text.
pub const ATTACKS: &[&str] = &[
    "none",
    "loop",
    "memory-bomb",
    "recursion",
    "flood",
    "emit",
    "read-file",
    "list-dir",
    "write-file",
    "connect",
    "env",
    "clock",
    "panic",
    "forge",
    "sleep",
];

/// The misbehaviour chosen by the `attack` parameter, with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Passes records through unchanged.
    None,
    /// Spins forever.
    Loop,
    /// Allocates and touches 1 MiB chunks forever, keeping them all alive.
    MemoryBomb,
    /// Recurses without bound until the stack overflows.
    Recursion,
    /// Pushes copies of the first record (or of `flood`, on an empty partition) forever.
    Flood,
    /// Emits `copies` copies of every input record.
    Emit {
        /// Copies per input record.
        copies: usize,
    },
    /// Reads a file and emits its lines.
    ReadFile {
        /// The file to read.
        path: String,
    },
    /// Lists a directory and emits the entries' names.
    ListDir {
        /// The directory to list.
        path: String,
    },
    /// Writes `pwned` to a file.
    WriteFile {
        /// The file to write.
        path: String,
    },
    /// Opens a TCP connection and writes `stolen\n` to it.
    Connect {
        /// The `host:port` to connect to.
        address: String,
    },
    /// Emits the environment variables and the program arguments it can see.
    Env,
    /// Emits the wall clock and a value derived from the WASI random seed.
    Clock,
    /// Panics (a Wasm trap).
    Panic,
    /// Sleeps for an hour: a wait inside a host call (WASI poll on a clock subscription), where
    /// no epoch check runs.
    Sleep,
    /// Prints lines forging another job's log lines, with terminal escapes, then fails with a
    /// 1 MiB error message made of them.
    Forge,
}

/// A line that would pass for another job's batch line, then clears the screen and retitles
/// the terminal.
const FORGED: &str = "\n2026-12-03T00:00:00Z INFO job{name=good}: batch 1000 ms: 7 records in, \
                      FORGED-LINE\r\x1b[2J\x1b]0;pwned\x07\u{202e}";

/// The operator.
#[derive(Debug)]
pub struct Hostile {
    attack: Attack,
    /// The hasher keys of `clock`, drawn from WASI randomness on its first call and kept, so
    /// that one instance reports one value (a fresh `RandomState` would bump its keys per call).
    random: Option<RandomState>,
}

/// Fetches a parameter an attack cannot do without.
fn required(params: &Params, name: &str, attack: &str) -> Result<String, Error> {
    params
        .string(name)
        .ok_or_else(|| Error::new(format!("attack '{attack}' needs the '{name}' parameter")))
}

impl Transform for Hostile {
    fn info() -> Info {
        Info {
            name: "hostile",
            description: "misbehaves on every call as its 'attack' parameter says (sandbox tests)",
            params: &[
                (
                    "attack",
                    "the misbehaviour: none (default: pass through), loop, memory-bomb, \
                     recursion, flood, emit, read-file, list-dir, write-file, connect, env, \
                     clock, panic, forge or sleep",
                ),
                (
                    "path",
                    "the file of read-file and write-file (required), the directory of list-dir \
                     (default .)",
                ),
                (
                    "address",
                    "the host:port connect opens, e.g. 127.0.0.1:9999 (required)",
                ),
                (
                    "copies",
                    "how many copies of each record emit outputs (default 1000)",
                ),
                (
                    "stall",
                    "configure: spin in configure instead of starting (one job's slow start)",
                ),
            ],
            key_type: None,
            value_type: None,
            monoid: None,
        }
    }

    fn configure(params: &Params) -> Result<Self, Error> {
        if params.string("stall") == Some("configure".into()) {
            // A start that never ends: only the host's call-time limit stops it.
            spin();
        }
        let name = params.string("attack").unwrap_or_else(|| "none".into());
        let attack = match name.as_str() {
            "none" => Attack::None,
            "loop" => Attack::Loop,
            "memory-bomb" => Attack::MemoryBomb,
            "recursion" => Attack::Recursion,
            "flood" => Attack::Flood,
            "emit" => {
                let copies = params.i64("copies", 1000)?;
                let copies = usize::try_from(copies).map_err(|_| {
                    Error::new(format!("parameter 'copies' must be >= 0, got {copies}"))
                })?;
                Attack::Emit { copies }
            }
            "read-file" => Attack::ReadFile {
                path: required(params, "path", &name)?,
            },
            "list-dir" => Attack::ListDir {
                path: params.string("path").unwrap_or_else(|| ".".into()),
            },
            "write-file" => Attack::WriteFile {
                path: required(params, "path", &name)?,
            },
            "connect" => Attack::Connect {
                address: required(params, "address", &name)?,
            },
            "env" => Attack::Env,
            "clock" => Attack::Clock,
            "panic" => Attack::Panic,
            "forge" => Attack::Forge,
            "sleep" => Attack::Sleep,
            other => {
                return Err(Error::new(format!(
                    "unknown attack '{other}' (accepted: {})",
                    ATTACKS.join(", ")
                )));
            }
        };
        Ok(Hostile {
            attack,
            random: None,
        })
    }

    fn process(&mut self, input: &Partition, out: &mut PartitionBuilder) -> Result<(), Error> {
        match &self.attack {
            Attack::None => {
                for record in input.records() {
                    out.push_record(&record);
                }
                Ok(())
            }
            Attack::Loop => spin(),
            Attack::MemoryBomb => memory_bomb(),
            Attack::Recursion => {
                // Unreachable in practice: the recursion only ends by overflowing the stack.
                black_box(recurse(0));
                Ok(())
            }
            Attack::Flood => flood(input, out),
            Attack::Emit { copies } => {
                for record in input.records() {
                    for _ in 0..*copies {
                        out.push_record(&record);
                    }
                }
                Ok(())
            }
            Attack::ReadFile { path } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::new(format!("read-file {path} refused: {e}")))?;
                for line in text.lines() {
                    out.push_value(line.as_bytes());
                }
                Ok(())
            }
            Attack::ListDir { path } => {
                let refused =
                    |e: std::io::Error| Error::new(format!("list-dir {path} refused: {e}"));
                for entry in std::fs::read_dir(path).map_err(refused)? {
                    let entry = entry.map_err(refused)?;
                    out.push_value(entry.file_name().to_string_lossy().as_bytes());
                }
                Ok(())
            }
            Attack::WriteFile { path } => {
                std::fs::write(path, b"pwned")
                    .map_err(|e| Error::new(format!("write-file {path} refused: {e}")))?;
                out.push_value(format!("wrote {path}").as_bytes());
                Ok(())
            }
            Attack::Connect { address } => {
                let refused =
                    |e: std::io::Error| Error::new(format!("connect {address} refused: {e}"));
                let mut stream = std::net::TcpStream::connect(address.as_str()).map_err(refused)?;
                stream.write_all(b"stolen\n").map_err(refused)?;
                out.push_value(b"connected");
                Ok(())
            }
            Attack::Env => env(out),
            Attack::Clock => {
                // Milliseconds since the epoch; negative if the clock says before it.
                let wall: i128 = match SystemTime::now().duration_since(UNIX_EPOCH) {
                    Ok(since) => since.as_millis() as i128,
                    Err(e) => -(e.duration().as_millis() as i128),
                };
                // RandomState's keys come from WASI randomness; hashing a constant shows them.
                let random = self
                    .random
                    .get_or_insert_with(RandomState::new)
                    .hash_one(0x5EED_u64);
                out.push_value(format!("wall={wall}").as_bytes());
                out.push_value(format!("random={random}").as_bytes());
                Ok(())
            }
            Attack::Panic => panic!("hostile operator panicked on purpose"),
            Attack::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(())
            }
            Attack::Forge => {
                print!("{FORGED}");
                eprintln!("{FORGED}");
                Err(Error::new(FORGED.repeat((1 << 20) / FORGED.len() + 1)))
            }
        }
    }
}

/// Spins forever; `black_box` keeps the optimizer from removing or collapsing the loop.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, touching every 4 KiB page so that the memory is really
/// used, and keeps them all alive: only the host's memory limit (or an allocation failure,
/// which aborts) ends it.
fn memory_bomb() -> ! {
    const CHUNK: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.chunks_mut(PAGE) {
            page[0] = 0xA5;
        }
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

/// Recurses until the stack overflows. The recursive call is not in tail position (its result
/// is used afterwards) and every frame holds a `black_box`ed array, so the optimizer can turn
/// it neither into a loop nor into nothing. The exit condition is never met; it only keeps the
/// `unconditional_recursion` lint quiet.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 16]);
    let below = recurse(black_box(depth + 1));
    black_box(frame)[15].wrapping_add(below)
}

/// A flatMap that never ends: pushes copies of the first record forever (or of `flood`, when
/// the partition is empty). Only the host's limits (output size, memory, time) end it.
fn flood(input: &Partition, out: &mut PartitionBuilder) -> Result<(), Error> {
    match input.records().next() {
        Some(first) => loop {
            out.push_record(&first);
            black_box(&mut *out);
        },
        None => loop {
            out.push_value(b"flood");
            black_box(&mut *out);
        },
    }
}

/// Emits `K=V` for every environment variable and `arg[i]=A` for every program argument, or
/// fails when it sees neither.
fn env(out: &mut PartitionBuilder) -> Result<(), Error> {
    let mut seen = false;
    for (key, value) in std::env::vars_os() {
        let pair = format!("{}={}", key.to_string_lossy(), value.to_string_lossy());
        out.push_value(pair.as_bytes());
        seen = true;
    }
    for (i, arg) in std::env::args_os().enumerate() {
        out.push_value(format!("arg[{i}]={}", arg.to_string_lossy()).as_bytes());
        seen = true;
    }
    if seen {
        Ok(())
    } else {
        Err(Error::new(
            "env refused: no environment variables or arguments visible",
        ))
    }
}

spate_guest::export_transform!(Hostile);
