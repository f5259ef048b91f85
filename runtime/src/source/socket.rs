//! A TCP text client, like Spark's `socketTextStream`: connects to host:port, reads lines, and
//! reconnects with exponential backoff when the server goes away, saying so in the log.
//!
//! With `resume-protocol`, the producer can resend what a crash lost: offsets count the bytes of
//! the source's stream over all connections. On connecting, Spate sends `RESUME <offset>\n`,
//! the offset of the first byte it has not received (always at a line start), and the producer
//! sends its stream from there. As batches are logged (or processed, without a checkpoint
//! directory), Spate sends `ACK <offset>\n`: the bytes before it are safe and the producer may
//! forget them.

use super::lines::{LineRules, LineSplitter};
use super::{ReceiverContext, Source};
use crate::config::{BadLinePolicy, ByteSize, ConfigError, ConnectorTable, Interval, Trigger};
use crate::position::Progress;
use anyhow::Result;
use serde::Deserialize;
use spate_guest::Column;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use toml::Spanned;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 64 << 10;

/// `type = "socket"`: the fields of the table.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Fields {
    /// Server host name or address.
    host: Option<Spanned<String>>,
    /// Server port.
    port: Option<Spanned<u16>>,
    /// Longest wait between reconnection attempts (default 5s).
    reconnect_max: Option<Interval>,
    /// The producer speaks Spate's resume protocol (`RESUME <offset>` on connect, `ACK
    /// <offset>` as data is logged), so nothing is lost or doubled across crashes.
    resume_protocol: Option<bool>,
    /// Longest accepted line (default 1 MiB).
    max_line_length: Option<ByteSize>,
    /// `fail` (default) or `skip`.
    on_bad_line: Option<BadLinePolicy>,
}

/// A TCP client reading text lines, like Spark's `socketTextStream`.
#[derive(Debug)]
pub struct Socket {
    host: String,
    port: u16,
    lines: LineRules,
    /// Longest wait between reconnection attempts (backoff doubles up to it).
    reconnect_max: Interval,
    resume_protocol: bool,
}

/// Reads a socket source's table.
pub fn build(table: &ConnectorTable<'_>) -> Result<Box<dyn Source>, ConfigError> {
    let fields: Fields = table.fields()?;
    let host = table.required("host", &fields.host)?.clone();
    let port = *table.required("port", &fields.port)?;
    let span = fields.host.as_ref().map_or(0..0, toml::Spanned::span);
    table.endpoint(span, "host", &host, port)?;
    Ok(Box::new(Socket {
        host,
        port,
        lines: LineRules::new(fields.max_line_length, fields.on_bad_line),
        reconnect_max: fields
            .reconnect_max
            .unwrap_or(Interval(Duration::from_secs(5))),
        resume_protocol: fields.resume_protocol.unwrap_or(false),
    }))
}

impl Source for Socket {
    fn describe(&self) -> String {
        format!(
            "socket text client of {}:{} ({})",
            self.host,
            self.port,
            self.lines.describe()
        )
    }

    fn receive(&self, context: &ReceiverContext) -> Result<()> {
        run(context, self)
    }
}

/// Runs until the job stops (or, with `available-now`, until the server closes the connection).
fn run(context: &ReceiverContext, spec: &Socket) -> Result<()> {
    let Socket {
        host,
        port,
        lines: rules,
        reconnect_max,
        resume_protocol,
    } = spec;
    let address = format!("{host}:{port}");
    let mut backoff = FIRST_BACKOFF;
    let mut connection = 0u64;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut offset = context.resume.stream;
    while !context.buffer.is_stopping() {
        let stream = match connect(&address, resume_protocol.then_some(offset)) {
            Ok(stream) => stream,
            Err(e) => {
                context
                    .gauges
                    .error(format!("cannot connect to {address}: {e}"));
                tracing::warn!(
                    "source '{}': cannot connect to {address} ({e}); retrying in {}",
                    context.name,
                    humantime::format_duration(backoff)
                );
                if !context.sleep(backoff) {
                    break;
                }
                backoff = (backoff * 2).min(reconnect_max.0);
                continue;
            }
        };
        connection += 1;
        if connection > 1 {
            context.gauges.reconnected();
        }
        backoff = FIRST_BACKOFF;
        tracing::info!("source '{}': connected to {address}", context.name);
        let origin = format!("socket {address} (connection {connection})");
        let mut splitter = rules.splitter(origin, offset);
        let mut reader = Connection {
            stream,
            start: offset,
            splitter: &mut splitter,
            resume_protocol: *resume_protocol,
            acked: offset,
        };
        let ended = reader.read(context, &mut buf)?;
        offset = reader.offset();
        if context.trigger == Trigger::AvailableNow {
            break;
        }
        if let Some(reason) = ended {
            context.gauges.error(reason.clone());
            tracing::warn!(
                "source '{}': {reason}; reconnecting to {address}",
                context.name
            );
        }
    }
    Ok(())
}

/// Connects, and with the resume protocol asks for the stream from `resume`.
fn connect(address: &str, resume: Option<u64>) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the address resolves to nothing");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                if let Some(offset) = resume {
                    stream.write_all(format!("RESUME {offset}\n").as_bytes())?;
                }
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One connection being read.
struct Connection<'a> {
    stream: TcpStream,
    /// The stream offset of the connection's first byte.
    start: u64,
    splitter: &'a mut LineSplitter,
    resume_protocol: bool,
    /// The last offset acknowledged.
    acked: u64,
}

impl Connection<'_> {
    /// The stream offset after the last complete line received.
    fn offset(&self) -> u64 {
        self.start + self.splitter.consumed()
    }

    fn deliver(&mut self, context: &ReceiverContext, lines: &mut Column) -> bool {
        let progress = Progress::Stream(self.offset());
        context.deliver(lines, self.splitter, Some(progress))
    }

    /// The end of the connection. A partial last line is delivered, rather than lost, unless
    /// the producer will resend it from its line start.
    fn finish(&mut self, context: &ReceiverContext, lines: &mut Column) -> Result<()> {
        if !self.resume_protocol {
            self.splitter.finish(lines)?;
        }
        self.deliver(context, lines);
        Ok(())
    }

    /// Tells a resume-protocol producer how far its stream is safe.
    fn acknowledge(&mut self, context: &ReceiverContext) -> std::io::Result<()> {
        let safe = context.acks.get(context.index);
        if self.resume_protocol && safe > self.acked {
            self.stream.write_all(format!("ACK {safe}\n").as_bytes())?;
            self.acked = safe;
        }
        Ok(())
    }

    /// Reads the connection to its end. Returns why it ended (none: the job is stopping).
    fn read(&mut self, context: &ReceiverContext, buf: &mut [u8]) -> Result<Option<String>> {
        let mut lines = context.buffer.block_column(buf.len());
        loop {
            let read = self
                .acknowledge(context)
                .and_then(|_| self.stream.read(buf));
            match read {
                Ok(0) => {
                    self.finish(context, &mut lines)?;
                    return Ok(Some("the server closed the connection".into()));
                }
                Ok(n) => {
                    self.splitter.feed(&buf[..n], &mut lines)?;
                    if !self.deliver(context, &mut lines) {
                        return Ok(None);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    if context.buffer.is_stopping() {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    self.finish(context, &mut lines)?;
                    return Ok(Some(format!("connection lost ({e})")));
                }
            }
        }
    }
}
