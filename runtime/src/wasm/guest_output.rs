//! A guest's stdout/stderr: kept in a buffer that the host drains into its log after each
//! call, and quotes in the error when a call fails (a Rust panic message lands here). What an
//! instance may write per batch is capped (`limits.log-bytes`): a chatty or hostile operator
//! cannot flood the host's log or memory.

use super::guest_text::guest_lines;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Bytes kept since the budget was last reset; past `budget`, output is dropped (and
    /// counted), never an error for the guest.
    kept: usize,
    budget: usize,
    dropped: usize,
}

/// One instance's captured output, shared by its stdout and stderr.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Buffer>>);

impl GuestOutput {
    /// Output that keeps at most `budget` bytes until [`GuestOutput::reset_budget`].
    pub fn new(budget: usize) -> Self {
        GuestOutput(Arc::new(Mutex::new(Buffer {
            budget,
            ..Buffer::default()
        })))
    }

    /// Lets the guest write `budget` bytes again (at the start of each batch).
    pub fn reset_budget(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).kept = 0;
    }

    /// Takes what the guest wrote since the last call, as one line (see
    /// [`super::guest_text::guest_lines`]), with a note when some was dropped.
    pub fn take(&self) -> String {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.bytes.is_empty() && buffer.dropped == 0 {
            // The common case, once per call: nothing printed, nothing to allocate.
            return String::new();
        }
        // The budget already bounds the bytes: the line is only escaped, not cut again.
        let budget = buffer.budget.max(buffer.bytes.len()).saturating_mul(6);
        let mut text = guest_lines(&String::from_utf8_lossy(&buffer.bytes), budget);
        if buffer.dropped > 0 {
            text.push_str(&format!(
                " [{} more bytes dropped: over this batch's limits.log-bytes]",
                buffer.dropped
            ));
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
        let room = buffer.budget.saturating_sub(buffer.kept);
        let kept = buf.len().min(room);
        buffer.bytes.extend_from_slice(&buf[..kept]);
        buffer.kept += kept;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(output: &GuestOutput, text: &str) {
        let mut output = output.clone();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let _ = Pin::new(&mut output).poll_write(&mut cx, text.as_bytes());
    }

    #[test]
    fn output_past_the_budget_is_dropped_until_the_next_batch() {
        let output = GuestOutput::new(5);
        write(&output, "hello world");
        assert_eq!(
            output.take(),
            "hello [6 more bytes dropped: over this batch's limits.log-bytes]"
        );
        write(&output, "again");
        assert!(output.take().starts_with(" [5 more bytes dropped"));
        output.reset_budget();
        write(&output, "again");
        assert_eq!(output.take(), "again");
    }
}
