//! Fault tolerance for a job with a checkpoint directory: recovery at start, the batch log in
//! front of the runner, and checkpoints behind it.
//!
//! The order of events that makes "lose nothing, count nothing twice" hold:
//! 1. the clock forms batch t; the logger writes its input and the sources' positions after it
//!    to the batch log and fsyncs them; only then is the input acknowledged to producers and
//!    handed to the runner;
//! 2. the runner runs batch t and writes its outputs (file outputs are replaced per batch time);
//! 3. at checkpoint times, the runner copies the state after batch t and a background thread
//!    writes it as a checkpoint, prunes old checkpoints and deletes the logs every kept
//!    checkpoint covers.
//!
//! After a crash, the newest valid checkpoint's state is restored and the logged batches after
//! it are run again with their own times and partitions; sources resume after the last logged
//! batch. Operators are deterministic (no clock or randomness unless granted), so replayed
//! batches give the outputs they gave before, and replace them.

use crate::batch::BatchInput;
use crate::checkpoint::{self, Metadata, batch_log, compat};
use crate::plan::{CheckpointSettings, Plan};
use crate::position::Positions;
use crate::source::{self, Acks};
use crate::state::JobState;
use crate::status::{CheckpointRecord, JobStatus, RecoveryRecord};
use crate::wallclock::now_ms;
use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What recovery found.
pub struct Recovered {
    /// Where each source resumes: after the last logged batch.
    pub positions: Positions,
    /// Logged batches to run again, oldest first.
    pub replay: Vec<PathBuf>,
    /// The first batch time after everything recovered.
    pub next_time: u64,
}

/// A checkpoint to write: its metadata, its state and how long copying the state took.
type CheckpointJob = (Metadata, Vec<u8>, Duration);

/// The writer thread and the way to it.
type Writer = (Sender<CheckpointJob>, JoinHandle<()>);

/// The checkpointing side of a running job.
pub struct Durability {
    settings: CheckpointSettings,
    log_dir: PathBuf,
    job: String,
    /// Where the sources stood after the last batch processed.
    positions: Positions,
    writer: Option<Writer>,
    failure: Arc<Mutex<Option<String>>>,
    /// Held while the job runs: one process per checkpoint directory.
    _lock: std::fs::File,
}

/// Moves a checkpoint directory aside (`--fresh`), keeping it for inspection.
pub fn set_aside(dir: &Path, now_ms: u64) -> Result<()> {
    if dir.exists() {
        // Not from under a running job.
        let _lock = checkpoint::lock_dir(dir)?;
        let aside = PathBuf::from(format!("{}.before-{now_ms}", dir.display()));
        std::fs::rename(dir, &aside)
            .with_context(|| format!("cannot move {} aside", dir.display()))?;
        tracing::warn!(
            "--fresh: the old checkpoints were moved to {}; starting without state",
            aside.display()
        );
    }
    Ok(())
}

impl Durability {
    /// Recovers `state` from the checkpoint directory (if it holds anything) and starts the
    /// checkpoint writer. Returns None as the recovery when there was nothing to recover.
    pub fn open(
        plan: &Plan,
        state: &mut JobState,
        status: &Arc<JobStatus>,
    ) -> Result<(Durability, Option<Recovered>)> {
        let settings = plan.job.checkpoint.clone().expect("checkpointing is on");
        let lock = checkpoint::lock_dir(&settings.dir)?;
        let log_dir = batch_log::dir(&settings.dir);
        let (found, skipped) = checkpoint::newest_valid(&settings.dir);
        for reason in &skipped {
            tracing::warn!("skipping a damaged checkpoint: {reason}; trying the previous one");
        }
        let mut positions = Positions::default();
        let mut after = None;
        if let Some(found) = &found {
            let (layout, operators) = (plan.state_layout(), plan.operator_stamps());
            let current = compat::Current {
                job: &plan.job.name,
                layout: &layout,
                operators: &operators,
            };
            let notices = compat::check(&found.metadata, &current).map_err(|why| {
                anyhow!(
                    "cannot resume from checkpoint {}: {why}",
                    found.path.display()
                )
            })?;
            for notice in notices {
                tracing::warn!("upgrade: {notice}");
            }
            state
                .restore(&found.state)
                .with_context(|| format!("cannot restore the state of {}", found.path.display()))?;
            positions = found.metadata.positions.clone();
            after = Some(found.metadata.batch_time);
        } else if !skipped.is_empty() {
            bail!(
                "every checkpoint in {} is damaged; to start without state, run with --fresh",
                settings.dir.display()
            );
        }
        let logs = batch_log::newer(&log_dir, after);
        let recovered = if found.is_some() || !logs.is_empty() {
            Some(recover(
                plan,
                &positions,
                after,
                logs,
                found.as_ref(),
                status,
            )?)
        } else {
            tracing::info!(
                "no checkpoint in {}: starting fresh",
                settings.dir.display()
            );
            None
        };
        let failure = Arc::new(Mutex::new(None));
        let writer = start_writer(&settings, &log_dir, &failure, status.clone())?;
        Ok((
            Durability {
                job: plan.job.name.clone(),
                settings,
                log_dir,
                positions,
                writer: Some(writer),
                failure,
                _lock: lock,
            },
            recovered,
        ))
    }

    /// Writes the checkpoint of a new job, before its first batch (at `time`): where its
    /// sources start.
    pub fn initial(
        &mut self,
        plan: &Plan,
        state: &JobState,
        time: u64,
        positions: &Positions,
    ) -> Result<()> {
        self.positions = positions.clone();
        let (metadata, bytes, _) = self.snapshot(plan, state, time);
        // Written here rather than by the writer thread: it must be on disk before any input
        // is taken.
        checkpoint::write(&self.settings.dir, &metadata, &bytes)
            .context("cannot write the job's first checkpoint")?;
        Ok(())
    }

    /// The batch log directory.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Batch `input` was processed: records its sources' progress and takes a checkpoint when
    /// one is due, after `sync_outputs` (a checkpoint must not run ahead of the outputs: the
    /// batches it covers are never replayed). Fails if an earlier checkpoint could not be
    /// written.
    pub fn after_batch(
        &mut self,
        plan: &Plan,
        state: &JobState,
        (time, progress): (u64, &[(usize, crate::position::Progress)]),
        sync_outputs: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        for (source, p) in progress {
            self.positions.apply(&plan.sources[*source].name, p);
        }
        self.check()?;
        if time.is_multiple_of(self.settings.interval.as_millis() as u64) {
            sync_outputs()?;
            self.checkpoint(plan, state, time, false)?;
        }
        Ok(())
    }

    /// Takes the final checkpoint of a graceful stop after batch `time` and waits until it and
    /// every earlier one are written.
    pub fn finish(&mut self, plan: &Plan, state: &JobState, time: Option<u64>) -> Result<()> {
        if let Some(time) = time {
            self.checkpoint(plan, state, time, true)?;
        }
        if let Some((sender, thread)) = self.writer.take() {
            drop(sender);
            let _ = thread.join();
        }
        self.check()
    }

    fn check(&self) -> Result<()> {
        match &*crate::state::lock(&self.failure) {
            Some(failure) => bail!("{failure}"),
            None => Ok(()),
        }
    }

    /// The state after batch `time`, the metadata describing it, and the time the copy took
    /// (the only part of a checkpoint that holds the batches up).
    fn snapshot(&self, plan: &Plan, state: &JobState, time: u64) -> CheckpointJob {
        let started = Instant::now();
        let bytes = state.encode();
        let copied = started.elapsed();
        let layout = plan.state_layout();
        let mut positions = self.positions.clone();
        source::prune_positions(&plan.sources, &mut positions);
        let metadata = Metadata {
            job: self.job.clone(),
            batch_time: time,
            plan_fingerprint: compat::fingerprint(&layout),
            layout,
            operators: plan.operator_stamps(),
            positions,
            pending_batches: batch_log::newer(&self.log_dir, Some(time))
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
        };
        (metadata, bytes, copied)
    }

    fn checkpoint(&self, plan: &Plan, state: &JobState, time: u64, wait: bool) -> Result<()> {
        let Some((sender, _)) = &self.writer else {
            return Ok(());
        };
        let job = self.snapshot(plan, state, time);
        if wait {
            sender
                .send(job)
                .map_err(|_| anyhow!("the checkpoint writer has stopped"))?;
        } else if let Err(TrySendError::Full(_)) = sender.try_send(job) {
            tracing::warn!(
                "checkpoint at batch {time} skipped: the previous one is still being written"
            );
        }
        Ok(())
    }
}

/// Reads what the batch log holds after the checkpoint and reports the recovery.
fn recover(
    plan: &Plan,
    checkpointed: &Positions,
    after: Option<u64>,
    logs: Vec<(u64, PathBuf)>,
    found: Option<&checkpoint::Checkpoint>,
    status: &JobStatus,
) -> Result<Recovered> {
    let mut positions = checkpointed.clone();
    let mut bytes = 0;
    for (_, path) in &logs {
        // Verified now, so that a damaged log stops the start rather than a replay half done.
        let input = batch_log::read(path).with_context(|| {
            format!(
                "the batch log {} is damaged and its batch cannot be replayed; move it away to \
                 go on without that batch's input",
                path.display()
            )
        })?;
        bytes += input.bytes();
        for (source, p) in &input.progress {
            if let Some(s) = plan.sources.get(*source) {
                positions.apply(&s.name, p);
            }
        }
    }
    let batch_ms = plan.job.batch_interval.as_millis() as u64;
    let last = logs.last().map(|(t, _)| *t).max(after).unwrap_or(0);
    let from = match found {
        Some(c) => format!(
            "checkpoint {} (batch {})",
            c.path.display(),
            c.metadata.batch_time
        ),
        None => "the batch log alone (no checkpoint yet)".to_owned(),
    };
    let replay = match (logs.first(), logs.last()) {
        (Some((first, _)), Some((last, _))) => format!(
            "{} batches to replay ({first}..{last}), {bytes} bytes of logged input",
            logs.len()
        ),
        _ => "no batches to replay".to_owned(),
    };
    tracing::info!(
        "recovered job '{}' from {from}: {replay}; sources resume at {}",
        plan.job.name,
        positions.summary()
    );
    status.recovered(RecoveryRecord {
        at_ms: now_ms(),
        from,
        replayed_batches: logs.len(),
        replayed_bytes: bytes,
    });
    Ok(Recovered {
        positions,
        replay: logs.into_iter().map(|(_, p)| p).collect(),
        // On the grid of the current batch interval, which may differ from the logged one's
        // (allowed when no state depends on it).
        next_time: (last / batch_ms + 1) * batch_ms,
    })
}

/// The checkpoint writer thread: writes, prunes, truncates the batch log.
fn start_writer(
    settings: &CheckpointSettings,
    log_dir: &Path,
    failure: &Arc<Mutex<Option<String>>>,
    status: Arc<JobStatus>,
) -> Result<Writer> {
    let (sender, receiver): (_, Receiver<CheckpointJob>) = crossbeam_channel::bounded(1);
    let (settings, log_dir, failure) = (settings.clone(), log_dir.to_owned(), failure.clone());
    let span = tracing::Span::current();
    let thread = std::thread::Builder::new()
        .name("spate-checkpoint".into())
        .spawn(move || {
            let _entered = span.enter();
            for (metadata, state, copied) in receiver {
                let started = Instant::now();
                let written =
                    checkpoint::write(&settings.dir, &metadata, &state).and_then(|path| {
                        let oldest = checkpoint::prune(&settings.dir, settings.kept)?;
                        if let Some(oldest) = oldest {
                            batch_log::truncate(&log_dir, oldest)?;
                        }
                        Ok(path)
                    });
                match written {
                    Ok(path) => {
                        let record = CheckpointRecord {
                            batch_time_ms: metadata.batch_time,
                            written_ms: now_ms(),
                            path: path.display().to_string(),
                            state_bytes: state.len() as u64,
                            copy_ms: copied.as_secs_f64() * 1e3,
                            write_ms: started.elapsed().as_secs_f64() * 1e3,
                        };
                        tracing::info!(
                            "checkpoint {} written: {} bytes of state, copied in {:.1} ms, \
                             compressed and written in {:.1} ms",
                            record.path,
                            record.state_bytes,
                            record.copy_ms,
                            record.write_ms
                        );
                        status.checkpoint_written(record);
                    }
                    Err(e) => {
                        let why =
                            format!("checkpoint of batch {} failed: {e:#}", metadata.batch_time);
                        tracing::error!("{why}");
                        crate::state::lock(&failure).get_or_insert(why);
                        return;
                    }
                }
            }
        })
        .map_err(|e| anyhow!("cannot start the checkpoint writer: {e}"))?;
    Ok((sender, thread))
}

/// The batch logger thread, between the clock and the runner: logs each batch, acknowledges
/// its input to producers, then passes it on. A failed write (a full disk) stops the job with
/// the error; the batch is not run, and its input, never acknowledged, is read again after a
/// restart. Batches without input are logged only with `log_empty` (an output remembers the
/// batch times it wrote).
pub fn start_logger(
    log_dir: &Path,
    log_empty: bool,
    from_clock: Receiver<BatchInput>,
    to_runner: Sender<BatchInput>,
    acks: Arc<Acks>,
    buffer: Arc<crate::batch::BlockBuffer>,
) -> Result<JoinHandle<()>> {
    let log_dir = log_dir.to_owned();
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("spate-batch-log".into())
        .spawn(move || {
            let _entered = span.enter();
            for input in from_clock {
                // A batch without input or progress needs no log where recovery may form the
                // batch of its time again: the batch it forms may then hold input that arrived
                // since, and writes replace the earlier output. This keeps a recovered job's
                // catch-up over its down time free of disk writes. An output that skips the
                // batch times it wrote (a marker) would drop that input: with one, every batch
                // is logged, so that recovery resumes after it.
                let empty = input.blocks.is_empty() && input.progress.is_empty();
                if let Err(e) = (log_empty || !empty)
                    .then(|| batch_log::write(&log_dir, &input))
                    .transpose()
                {
                    buffer.fail(format!("batch {}: {e:#}", input.time_ms));
                    return;
                }
                for (source, progress) in &input.progress {
                    acks.advance(*source, progress);
                }
                if to_runner.send(input).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| anyhow!("cannot start the batch logger: {e}"))
}
