//! A TCP text client, like Spark's `socketTextStream`: connects to host:port, reads lines, and
//! reconnects with exponential backoff when the server goes away, saying so in the log.

use super::ReceiverContext;
use super::lines::LineSplitter;
use crate::config::{SourceSpec, Trigger};
use anyhow::{Result, bail};
use spate_guest::Column;
use std::io::{ErrorKind, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 64 << 10;

/// Runs until the job stops (or, with `available-now`, until the server closes the connection).
pub fn run(context: &ReceiverContext, spec: &SourceSpec) -> Result<()> {
    let SourceSpec::Socket {
        host,
        port,
        lines: rules,
        reconnect_max,
    } = spec
    else {
        bail!("not a socket source");
    };
    let address = format!("{host}:{port}");
    let mut backoff = FIRST_BACKOFF;
    let mut connection = 0u64;
    let mut buf = vec![0u8; READ_CHUNK];
    while !context.buffer.is_stopping() {
        let stream = match connect(&address) {
            Ok(stream) => stream,
            Err(e) => {
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
        backoff = FIRST_BACKOFF;
        tracing::info!("source '{}': connected to {address}", context.name);
        let origin = format!("socket {address} (connection {connection})");
        let mut splitter =
            LineSplitter::new(origin, rules.max_line_length.get(), rules.on_bad_line);
        let ended = read_connection(context, stream, &mut splitter, &mut buf)?;
        if context.trigger == Trigger::AvailableNow {
            break;
        }
        if let Some(reason) = ended {
            tracing::warn!(
                "source '{}': {reason}; reconnecting to {address}",
                context.name
            );
        }
    }
    Ok(())
}

fn connect(address: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(ErrorKind::NotFound, "the address resolves to nothing");
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads one connection to its end. Returns why it ended (none: the job is stopping).
fn read_connection(
    context: &ReceiverContext,
    mut stream: TcpStream,
    splitter: &mut LineSplitter,
    buf: &mut [u8],
) -> Result<Option<String>> {
    let mut lines = Column::default();
    loop {
        match stream.read(buf) {
            Ok(0) => {
                splitter.finish(&mut lines)?;
                context.deliver(&mut lines, splitter);
                return Ok(Some("the server closed the connection".into()));
            }
            Ok(n) => {
                splitter.feed(&buf[..n], &mut lines)?;
                if !context.deliver(&mut lines, splitter) {
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
                // What was received before the error is complete lines already delivered; a
                // partial last line is delivered too rather than lost.
                splitter.finish(&mut lines)?;
                context.deliver(&mut lines, splitter);
                return Ok(Some(format!("connection lost ({e})")));
            }
        }
    }
}
