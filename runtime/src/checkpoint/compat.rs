//! Whether a checkpoint's state fits the plan being run: the layout of the state (which
//! stateful nodes, in which order, with which partitions and windows) must be the same, and a
//! state operator whose code changed must declare the same state schema version. Operators
//! without state may change freely. Anything else is refused with what changed and the options.
//! The plan describes itself ([`Current`]); this module knows no operator.

use super::{Metadata, OperatorStamp};

/// What a run would checkpoint, to compare with a checkpoint's [`Metadata`].
pub struct Current<'a> {
    /// The job's name.
    pub job: &'a str,
    /// The stateful nodes, in state order, each as `'<stream>': <what its state holds>`, after
    /// the batch interval (windows and timeouts count batches); empty without state.
    pub layout: &'a [String],
    /// The operators, in plan order.
    pub operators: &'a [OperatorStamp],
}

/// A short fingerprint of a layout.
pub fn fingerprint(layout: &[String]) -> String {
    let hash = blake3::hash(layout.join("\n").as_bytes());
    hash.to_hex()[..16].to_owned()
}

const OPTIONS: &str = "to convert the old state, run `spate migrate <pipeline> --step <name> \
     --with <migration operator>` first; to start over without it, run with --fresh (the \
     checkpoint directory is moved aside, not deleted); or run the previous version";

/// Checks a checkpoint against the run about to start. Ok holds notices of accepted changes
/// (to be logged); Err the refusal, saying what changed and the options.
pub fn check(old: &Metadata, current: &Current<'_>) -> Result<Vec<String>, String> {
    if old.job != current.job {
        return Err(format!(
            "it belongs to job '{}', not '{}': give each job its own checkpoint directory \
             (or, if the job was renamed, set `job.name` back)",
            old.job, current.job
        ));
    }
    let layout = current.layout;
    if old.layout != layout {
        let mut changes = Vec::new();
        for i in 0..old.layout.len().max(layout.len()) {
            let (was, now) = (old.layout.get(i), layout.get(i));
            if was != now {
                let show = |s: Option<&String>| s.map_or("nothing".to_owned(), |s| s.to_owned());
                changes.push(format!("was {}, is now {}", show(was), show(now)));
            }
        }
        return Err(format!(
            "the pipeline's state layout changed since the checkpoint ({}); {OPTIONS}",
            changes.join("; ")
        ));
    }
    let mut notices = Vec::new();
    let new = current.operators;
    let state_ops = |s: &[OperatorStamp]| -> Vec<OperatorStamp> {
        s.iter()
            .filter(|o| o.schema_version.is_some())
            .cloned()
            .collect()
    };
    for (was, now) in state_ops(&old.operators).iter().zip(state_ops(new)) {
        if was.hash == now.hash {
            continue;
        }
        if was.schema_version != now.schema_version {
            return Err(format!(
                "the state operator of {} changed its state schema version from {} to {} \
                 (the checkpoint's state was written by {}); {OPTIONS}",
                now.name,
                was.schema_version.unwrap_or(0),
                now.schema_version.unwrap_or(0),
                was.name
            ));
        }
        notices.push(format!(
            "the state operator of {} changed (code {} -> {}) with the same state schema \
             version {}: it resumes with its state",
            now.name,
            was.hash,
            now.hash,
            now.schema_version.unwrap_or(0)
        ));
    }
    for (i, now) in new.iter().enumerate() {
        // The same step's operators pair up in order (a window step has a combiner and its
        // inverse).
        let nth = new[..i].iter().filter(|o| o.step == now.step).count();
        let was = old.operators.iter().filter(|o| o.step == now.step).nth(nth);
        if let Some(was) = was
            && now.schema_version.is_none()
            && was.hash != now.hash
        {
            notices.push(format!(
                "{} changed (code {} -> {}); it keeps no state, so its new code simply runs",
                now.name, was.hash, now.hash
            ));
        }
    }
    Ok(notices)
}
