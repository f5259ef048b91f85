//! A guest's stdout/stderr: kept in a bounded buffer that the host drains into its log after
//! each call, and quotes in the error when a call fails (a Rust panic message lands here).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes kept per call; more is dropped (and counted), never an error for the guest.
const CAPACITY: usize = 16 << 10;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

/// One instance's captured output, shared by its stdout and stderr.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Buffer>>);

impl GuestOutput {
    /// Takes what the guest wrote since the last call, with a note when some was dropped.
    pub fn take(&self) -> String {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.bytes.is_empty() && buffer.dropped == 0 {
            // The common case, once per call: nothing printed, nothing to allocate.
            return String::new();
        }
        let mut text = String::from_utf8_lossy(&buffer.bytes).trim_end().to_owned();
        if buffer.dropped > 0 {
            text.push_str(&format!(" [{} more bytes dropped]", buffer.dropped));
        }
        buffer.bytes.clear();
        buffer.dropped = 0;
        text
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPACITY.saturating_sub(buffer.bytes.len());
        let kept = buf.len().min(room);
        buffer.bytes.extend_from_slice(&buf[..kept]);
        buffer.dropped += buf.len() - kept;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
