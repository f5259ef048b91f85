//! Trying a write again while the server it goes to is away: the one backoff loop of the
//! outputs that talk to servers (Kafka, PostgreSQL).

use super::OutputGauges;
use anyhow::Result;
use std::time::{Duration, Instant};

/// An error that trying again cannot mend (refused credentials, a constraint violation, a
/// producer fenced by a newer run): [`retrying`] returns it at once.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Permanent(pub anyhow::Error);

/// Runs `attempt` until it succeeds, fails with a [`Permanent`] error, or `retry_for` has
/// passed; each failure is logged, naming `connector` and `what` was being done, with the wait
/// before the next try (from 250 ms, doubling up to 10 s), and counted in `gauges`.
pub fn retrying<T>(
    gauges: &OutputGauges,
    connector: &str,
    what: &str,
    retry_for: Duration,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + retry_for;
    let mut wait = Duration::from_millis(250);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) if !e.is::<Permanent>() && Instant::now() + wait < deadline => {
                gauges.retried(format!("{what}: {e:#}"));
                tracing::warn!(
                    "{connector}: {what}: {e:#}; retrying in {}",
                    humantime::format_duration(wait)
                );
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn passing_failures_are_tried_again_and_permanent_ones_are_not() {
        let gauges = OutputGauges::default();
        let mut tries = 0;
        let value = retrying(&gauges, "test", "writing", Duration::from_secs(5), || {
            tries += 1;
            match tries {
                1 => Err(anyhow!("server away")),
                _ => Ok(tries),
            }
        })
        .unwrap();
        assert_eq!(value, 2);
        let reading = gauges.read();
        assert_eq!(reading.retries, 1);
        assert_eq!(reading.last_error.as_deref(), Some("writing: server away"));

        let mut tries = 0;
        let error = retrying(
            &gauges,
            "test",
            "writing",
            Duration::from_secs(5),
            || -> Result<()> {
                tries += 1;
                Err(Permanent(anyhow!("constraint violated")).into())
            },
        )
        .unwrap_err();
        assert_eq!(tries, 1);
        assert_eq!(
            gauges.read().retries,
            1,
            "a permanent error is not tried again"
        );
        assert!(error.to_string().contains("constraint violated"));

        let error = retrying(
            &gauges,
            "test",
            "writing",
            Duration::from_millis(1),
            || -> Result<()> { Err(anyhow!("still away")) },
        )
        .unwrap_err();
        assert!(error.to_string().contains("still away"));
    }
}
