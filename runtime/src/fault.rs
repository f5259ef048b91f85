//! Whose fault a failed task is. A guest fault (a trap, a limit hit, malformed output, an
//! operator's error, bad input) is retried on fresh instances and then failed or skipped with
//! its input dead-lettered, by the job's policy; a host fault (a broken invariant of Spate's
//! own) stops the job with an "internal error" naming where, and is never retried or
//! dead-lettered, since the data is not what is wrong. Errors are guest faults unless made
//! with [`host_fault`].

use std::fmt;

/// A host invariant broken: a bug of Spate's, not of the operator or the data.
#[derive(Debug)]
pub struct HostFault(String);

impl fmt::Display for HostFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "internal error: {}", self.0)
    }
}

impl std::error::Error for HostFault {}

/// An error for a broken host invariant, `what` saying which.
pub fn host_fault(what: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(HostFault(what.into()))
}

/// True when `error`, or one it wraps, is a host fault.
pub fn is_host_fault(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<HostFault>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn host_faults_are_found_under_context() {
        let fault: anyhow::Result<()> = Err(host_fault("no state"));
        let wrapped = fault
            .context("batch 1000 ms, stage 2, partition 0")
            .unwrap_err();
        assert!(is_host_fault(&wrapped));
        assert!(format!("{wrapped:#}").contains("internal error: no state"));
        assert!(!is_host_fault(&anyhow::anyhow!("trap")));
    }
}
