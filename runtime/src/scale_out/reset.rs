//! `spate reset`: retires a scale-out job's state so that its next run starts again from the
//! input's starting offsets, as Kafka Streams' application reset tool does. The tasks'
//! checkpoints are moved aside (kept for inspection, as `spate run --fresh` keeps a job's) and
//! the internal (repartition) topics are deleted. Every process of the job must be stopped
//! first: a running task holds its directory's lock, and the reset refuses, naming it, before
//! it changes anything.

use super::{ScaleOut, internal_topics};
use anyhow::{Context, Result};

/// Resets `scale_out`; says what it did, one line per thing. `now_ms` names the directory the
/// checkpoints are moved to.
pub fn reset(scale_out: &ScaleOut, now_ms: u64) -> Result<String> {
    let tasks = scale_out.checkpoint_dir.join("tasks");
    // Every task's lock is held until the end, so that no member starts one meanwhile.
    let mut locks = Vec::new();
    if tasks.exists() {
        for entry in
            std::fs::read_dir(&tasks).with_context(|| format!("cannot read {}", tasks.display()))?
        {
            let dir = entry?.path();
            if dir.is_dir() {
                let task = dir.file_name().unwrap_or_default().to_string_lossy();
                let lock = crate::checkpoint::lock_dir(&dir).with_context(|| {
                    format!("task {task} is running: stop every process of the job first")
                })?;
                locks.push(lock);
            }
        }
    }
    let mut said = Vec::new();
    for topic in scale_out.repartition.iter().flat_map(|r| &r.topics) {
        said.push(
            match internal_topics::delete(&scale_out.input.client, topic)? {
                true => format!("deleted the repartition topic '{topic}'"),
                false => format!("the repartition topic '{topic}' did not exist"),
            },
        );
    }
    if locks.is_empty() {
        said.push(format!("no task checkpoints in {}", tasks.display()));
    } else {
        let aside = tasks.with_file_name(format!("tasks.before-{now_ms}"));
        std::fs::rename(&tasks, &aside)
            .with_context(|| format!("cannot move {} aside", tasks.display()))?;
        said.push(format!(
            "moved the checkpoints of {} task(s) to {}",
            locks.len(),
            aside.display()
        ));
    }
    Ok(said.join("\n"))
}
