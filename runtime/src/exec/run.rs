//! One batch through the plan: the nodes in order, each as tasks on the worker pool; a stream
//! is handed to its last reader (copied for the others) and dropped once read.

use super::input_release::InputRelease;
use super::keyed::{
    PartitionQueue, append_buckets, cogroup, group_by_key, join, map_side, map_side_deferred,
    split_last_partitions,
};
use super::narrow;
use super::pool::{Worker, WorkerPool};
use super::tasks::{TaskFigures, TaskId, attempt};
use crate::batch::Block;
use crate::plan::{Combine, GlobalOp, KeyedInput, KeyedOp, NodeKind, Plan, StreamId, StreamType};
use crate::shuffle::{Folder, combine_by_key};
use crate::state::{JobState, NodeState, Watermarks, WindowReduce, lock};
use anyhow::{Result, anyhow};
use spate_guest::{Batch, Column};
use std::sync::Arc;

/// A map-side task of a keyed node: its buckets, one per shuffle partition.
type MapTask =
    Box<dyn FnOnce(&mut Worker) -> Result<(Option<Vec<Batch>>, TaskFigures)> + Send + 'static>;

/// A map task's buckets; a skipped task sends empty ones.
fn skipped_as_empty(out: Option<Vec<Batch>>, partitions: usize) -> Vec<Batch> {
    out.unwrap_or_else(|| vec![Batch::default(); partitions])
}

/// Input `side` of keyed node `n`, and the node's shuffle partition count.
fn keyed_side(plan: &Plan, n: usize, side: usize) -> (&KeyedInput, usize) {
    let NodeKind::Keyed {
        inputs, partitions, ..
    } = &plan.nodes[n].kind
    else {
        unreachable!("map tasks belong to keyed nodes")
    };
    (&inputs[side], *partitions)
}

/// The map side of keyed node `n` over one partition of input `side`, with the job's retries
/// and failure policy.
fn map_task(
    worker: &mut Worker,
    plan: &Plan,
    n: usize,
    side: usize,
    id: TaskId,
    batch: Batch,
) -> Result<(Option<Vec<Batch>>, TaskFigures)> {
    let (input, partitions) = keyed_side(plan, n, side);
    attempt(
        worker,
        plan,
        id,
        &mut [batch],
        &input.types,
        |w, batches| {
            let out = narrow::apply(w, plan, &input.narrow, &mut batches[0])?;
            let batch = out.as_ref().unwrap_or(&batches[0]);
            map_side(w, input, partitions, id.partition, batch)
        },
    )
    .map(|(out, figures)| (Some(skipped_as_empty(out, partitions)), figures))
}

/// The map side of keyed node `n` over the partitions of input `side` this worker takes from
/// `queue`, with `operator` holding its combined output until the queue is empty. If that
/// fails, the instances are dropped (with whatever they held) and the partitions it took, and
/// those still queued, run one by one through [`map_task`], so that retries and the failure
/// policy work on the partition that failed, as without the grouping.
fn map_share_task(
    worker: &mut Worker,
    plan: &Plan,
    (n, side, operator): (usize, usize, usize),
    batch_time: u64,
    queue: &PartitionQueue<TaskId>,
    release: Option<&InputRelease>,
) -> Result<(Option<Vec<Batch>>, TaskFigures)> {
    let (input, partitions) = keyed_side(plan, n, side);
    worker.begin_batch(batch_time);
    let mut taken = Vec::new();
    let mut taken_bytes = 0;
    let next = || {
        let part = queue.take();
        taken_bytes += part.as_ref().map_or(0, |(_, batch)| input_bytes(batch));
        part
    };
    let held = map_side_deferred(worker, plan, input, operator, partitions, next, &mut taken);
    let error = match held {
        Ok(buckets) => {
            drop(taken);
            if let Some(release) = release {
                release.release(taken_bytes);
            }
            return Ok((Some(buckets), TaskFigures::default()));
        }
        Err(e) => e,
    };
    taken.extend(queue.take_all());
    let first = taken.first().map(|(id, _)| *id);
    tracing::warn!(
        "{}: failed over the {} partitions of its worker, running them one at a time: {error:#}",
        first.map_or_else(String::new, |id| id.to_string()),
        taken.len()
    );
    worker.discard_instances();
    let mut buckets = skipped_as_empty(None, partitions);
    let mut figures = TaskFigures::default();
    for (id, batch) in taken {
        let (out, more) = map_task(worker, plan, n, side, id, batch)?;
        append_buckets(&mut buckets, skipped_as_empty(out, partitions));
        figures.add(more);
    }
    Ok((Some(buckets), figures))
}

/// The bytes of a source partition, as the source buffer counts them.
fn input_bytes(batch: &Batch) -> usize {
    batch.values.data.len()
}

/// A stream's batch at this batch time: its partitions, or none at times its slide skips.
type StreamBatch = Option<Vec<Batch>>;

/// What a batch produced: the batch of each stream an output reads (by stream id; the others
/// are `None`), and the tasks' figures.
pub struct BatchOutput {
    /// Stream batches, by stream id.
    pub streams: Vec<StreamBatch>,
    /// Retries, skips, late records.
    pub figures: TaskFigures,
}

/// Runs every node of `plan` over a batch's input blocks; `end_of_input` for the last batch of
/// bounded input. Tasks that read input blocks and drop them report their bytes to `release`
/// (the rest is the caller's to release when the batch is done).
pub fn run_batch(
    pool: &WorkerPool,
    plan: &Arc<Plan>,
    state: &Arc<JobState>,
    blocks: Vec<Block>,
    (time, end_of_input): (u64, bool),
    release: &InputRelease,
) -> Result<BatchOutput> {
    let mut run = BatchRun {
        pool,
        plan,
        state,
        time,
        end_of_input,
        streams: vec![None; plan.streams.len()],
        readers: readers(plan),
        figures: TaskFigures::default(),
        source_streams: plan
            .nodes
            .iter()
            .filter(|node| matches!(node.kind, NodeKind::Source(_)))
            .flat_map(|node| node.outputs.iter().copied())
            .collect(),
        release: release.clone(),
    };
    let mut per_source: Vec<Vec<Batch>> = plan.sources.iter().map(|_| Vec::new()).collect();
    for block in blocks {
        per_source[block.source].push(Batch {
            keys: None,
            values: block.lines,
            timestamps: Vec::new(),
        });
    }
    for (n, node) in plan.nodes.iter().enumerate() {
        let outputs = match &node.kind {
            NodeKind::Source(source) => vec![Some(std::mem::take(&mut per_source[*source]))],
            kind => {
                let inputs: Vec<StreamBatch> =
                    kind.inputs().into_iter().map(|s| run.read(s)).collect();
                if inputs.iter().any(Option::is_none) {
                    // A stream read has no batch at this time: neither have the ones written.
                    vec![None; node.outputs.len()]
                } else {
                    let inputs = inputs.into_iter().flatten().collect();
                    run.node(n, inputs)?
                }
            }
        };
        for (&stream, batch) in node.outputs.iter().zip(outputs) {
            run.streams[stream] = batch;
        }
    }
    Ok(BatchOutput {
        streams: run.streams,
        figures: run.figures,
    })
}

/// How many times each stream is read in a batch: by nodes, and once by the outputs.
fn readers(plan: &Plan) -> Vec<usize> {
    let mut readers = vec![0; plan.streams.len()];
    for node in &plan.nodes {
        for s in node.kind.inputs() {
            readers[s] += 1;
        }
    }
    // Outputs read after every node, all from one copy: one more reader that never takes it.
    let mut output_streams: Vec<StreamId> = plan.outputs.iter().map(|o| o.stream).collect();
    output_streams.sort_unstable();
    output_streams.dedup();
    for s in output_streams {
        readers[s] += 1;
    }
    readers
}

struct BatchRun<'a> {
    pool: &'a WorkerPool,
    plan: &'a Arc<Plan>,
    state: &'a Arc<JobState>,
    time: u64,
    end_of_input: bool,
    streams: Vec<StreamBatch>,
    readers: Vec<usize>,
    figures: TaskFigures,
    /// The streams of input blocks.
    source_streams: Vec<StreamId>,
    release: InputRelease,
}

impl BatchRun<'_> {
    /// A stream's batch for one reader: moved to its last reader, copied for the others.
    fn read(&mut self, stream: StreamId) -> StreamBatch {
        self.readers[stream] -= 1;
        if self.readers[stream] == 0 {
            self.streams[stream].take()
        } else {
            self.streams[stream].clone()
        }
    }

    /// Where the tasks reading stream `stream` (one of a node's `inputs`) report the input they
    /// drop: only when the stream is a source's and its blocks went to them (no other reader
    /// keeps them, not even another input of the same node, as in a self-join).
    fn release_for(&self, stream: StreamId, inputs: &[StreamId]) -> Option<InputRelease> {
        let read_once = inputs.iter().filter(|&&s| s == stream).count() == 1;
        (self.source_streams.contains(&stream) && self.readers[stream] == 0 && read_once)
            .then(|| self.release.clone())
    }

    fn id(&self, node: usize, partition: usize) -> TaskId {
        TaskId {
            batch_time: self.time,
            node,
            partition,
        }
    }

    /// Runs tasks on the pool, collecting their figures; a skipped task's output is
    /// `T::default()`.
    fn run_tasks<T, F>(&mut self, tasks: Vec<F>) -> Result<Vec<T>>
    where
        T: Send + Default + 'static,
        F: FnOnce(&mut Worker) -> Result<(Option<T>, TaskFigures)> + Send + 'static,
    {
        let mut outputs = Vec::with_capacity(tasks.len());
        for result in self.pool.run_all(tasks) {
            let (output, figures) = result?;
            self.figures.add(figures);
            outputs.push(output.unwrap_or_default());
        }
        Ok(outputs)
    }

    /// Runs node `n` over its inputs' batches; returns a batch per stream it writes.
    fn node(&mut self, n: usize, mut inputs: Vec<Vec<Batch>>) -> Result<Vec<StreamBatch>> {
        let plan = self.plan.clone();
        let node = &plan.nodes[n];
        match &node.kind {
            NodeKind::Source(_) => unreachable!("sources are read from the blocks"),
            NodeKind::Union(_) => Ok(vec![Some(inputs.into_iter().flatten().collect())]),
            NodeKind::Narrow { input, .. } => {
                let types = plan.streams[*input].types.clone();
                let tasks = inputs
                    .pop()
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(p, batch)| {
                        let (plan, id, types) = (plan.clone(), self.id(n, p), types.clone());
                        move |worker: &mut Worker| {
                            let NodeKind::Narrow { steps, .. } = &plan.nodes[n].kind else {
                                unreachable!()
                            };
                            attempt(worker, &plan, id, &mut [batch], &types, |w, inputs| {
                                let out = narrow::apply(w, &plan, steps, &mut inputs[0])?;
                                Ok(out.unwrap_or_else(|| inputs[0].clone()))
                            })
                        }
                    })
                    .collect();
                Ok(vec![Some(self.run_tasks(tasks)?)])
            }
            NodeKind::Keyed { .. } => self.keyed(n, inputs),
            NodeKind::Global { input, op } => {
                let parts = inputs.pop().unwrap_or_default();
                let types = plan.streams[*input].types.clone();
                self.global(n, op, &types, parts).map(|out| vec![out])
            }
        }
    }

    /// A keyed node: the map side over every input partition, the shuffle, then one task per
    /// shuffle partition.
    fn keyed(&mut self, n: usize, inputs: Vec<Vec<Batch>>) -> Result<Vec<StreamBatch>> {
        let plan = self.plan.clone();
        let NodeKind::Keyed {
            inputs: sides,
            partitions,
            op,
        } = &plan.nodes[n].kind
        else {
            unreachable!()
        };
        let partitions = *partitions;
        let mut tasks = Vec::new();
        let mut side_tasks = Vec::new();
        let side_streams = plan.nodes[n].kind.inputs();
        for (side, parts) in inputs.into_iter().enumerate() {
            let release = self.release_for(side_streams[side], &side_streams);
            let first_id = tasks.len();
            let deferring = plan.deferring_operator(&sides[side]);
            let parts = match deferring {
                Some(_) => split_last_partitions(parts, plan.job.workers),
                None => parts,
            };
            let parts: Vec<(TaskId, Batch)> = parts
                .into_iter()
                .enumerate()
                .map(|(p, batch)| (self.id(n, first_id + p), batch))
                .collect();
            if let Some(operator) = deferring {
                // One task per worker, each holding its combined output over the partitions
                // it takes.
                let workers = plan.job.workers.clamp(1, parts.len().max(1));
                let queue = Arc::new(PartitionQueue::new(parts));
                side_tasks.push(workers);
                for _ in 0..workers {
                    let (plan, queue, time) = (plan.clone(), queue.clone(), self.time);
                    let release = release.clone();
                    tasks.push(Box::new(move |worker: &mut Worker| {
                        let (op, release) = ((n, side, operator), release.as_ref());
                        map_share_task(worker, &plan, op, time, &queue, release)
                    }) as MapTask);
                }
                continue;
            }
            side_tasks.push(parts.len());
            for (id, batch) in parts {
                let (plan, release) = (plan.clone(), release.clone());
                tasks.push(Box::new(move |worker: &mut Worker| {
                    let bytes = input_bytes(&batch);
                    let out = map_task(worker, &plan, n, side, id, batch);
                    if let Some(release) = release {
                        release.release(bytes);
                    }
                    out
                }) as MapTask);
            }
        }
        let map_outputs: Vec<Vec<Batch>> = self.run_tasks(tasks)?;
        // Reduce partition r reads bucket r of every map task, the left side's first.
        let left = side_tasks.first().copied().unwrap_or(0);
        let mut reduce_inputs: Vec<Vec<Batch>> = (0..partitions).map(|_| Vec::new()).collect();
        for buckets in map_outputs {
            for (r, bucket) in buckets.into_iter().enumerate() {
                reduce_inputs[r].push(bucket);
            }
        }
        let marks = match op {
            KeyedOp::EventWindow { lateness_ms, .. } => {
                Some(self.watermarks(n, &reduce_inputs, *lateness_ms))
            }
            _ => None,
        };
        let types = sides[0].types.clone();
        let tasks = reduce_inputs
            .into_iter()
            .enumerate()
            .map(|(r, buckets)| {
                let (plan, state, types) = (plan.clone(), self.state.clone(), types.clone());
                let (id, time) = (self.id(n, r), self.time);
                let mut buckets = buckets;
                move |worker: &mut Worker| {
                    attempt(worker, &plan, id, &mut buckets, &types, |w, buckets| {
                        reduce_side(w, &plan, &state, n, r, time, left, marks, buckets)
                    })
                }
            })
            .collect();
        let results: Vec<ReduceOutput> = self.run_tasks(tasks)?;
        let emitted = match op {
            KeyedOp::WindowReduce { window, .. } => self.time.is_multiple_of(window.slide_ms),
            _ => true,
        };
        self.figures.late_records += results.iter().map(|r| r.late_records).sum::<u64>();
        let mut main = Vec::with_capacity(results.len());
        let mut side = Vec::new();
        for result in results {
            main.extend(result.main);
            side.extend(result.side);
        }
        let mut outputs = vec![emitted.then_some(main)];
        if plan.nodes[n].outputs.len() > 1 {
            outputs.push(Some(side));
        }
        Ok(outputs)
    }

    /// The watermarks around this batch for event-time node `n`, moving its newest event time
    /// on with the batch's.
    fn watermarks(&self, n: usize, inputs: &[Vec<Batch>], lateness_ms: u64) -> Watermarks {
        let NodeState::EventTime(_, newest) = &self.state.nodes[n] else {
            unreachable!("an event-time node has event-time state")
        };
        let mut newest = lock(newest);
        let before = newest.map_or(i64::MIN, |t| t.saturating_sub(lateness_ms as i64));
        let batch_newest = inputs
            .iter()
            .flatten()
            .flat_map(|b| b.timestamps.iter().copied())
            .max();
        *newest = newest.max(batch_newest);
        let after = if self.end_of_input {
            // No event can come any more: every window is complete.
            i64::MAX
        } else {
            newest.map_or(i64::MIN, |t| t.saturating_sub(lateness_ms as i64))
        };
        Watermarks { before, after }
    }

    /// A node over a whole batch.
    fn global(
        &mut self,
        n: usize,
        op: &GlobalOp,
        types: &StreamType,
        parts: Vec<Batch>,
    ) -> Result<StreamBatch> {
        let time = self.time;
        let at_slide = |slide_ms: u64| time.is_multiple_of(slide_ms);
        let count = |parts: &[Batch]| parts.iter().map(Batch::len).sum::<usize>() as i64;
        let state = self.state.clone();
        Ok(match (op, &state.nodes[n]) {
            (GlobalOp::Count, _) => Some(vec![single(&count(&parts).to_le_bytes())]),
            (GlobalOp::Reduce(c), _) => {
                let value = self.reduce_all(n, *c, types, parts)?;
                Some(value.map(|v| vec![single(&v)]).unwrap_or_default())
            }
            (GlobalOp::Window(w), NodeState::Batches(history)) => {
                let mut history = lock(history);
                history.push(self.time, parts, w.length_ms);
                at_slide(w.slide_ms).then(|| history.items().flatten().cloned().collect())
            }
            (GlobalOp::CountByWindow(w), NodeState::Counts(history)) => {
                let mut history = lock(history);
                history.push(self.time, count(&parts), w.length_ms);
                let total: i64 = history.items().sum();
                at_slide(w.slide_ms).then(|| vec![single(&total.to_le_bytes())])
            }
            (GlobalOp::ReduceByWindow(c, w), NodeState::Values(history)) => {
                let value = self.reduce_all(n, *c, types, parts)?;
                let window: Vec<Batch> = {
                    let mut history = lock(history);
                    history.push(self.time, value, w.length_ms);
                    if !at_slide(w.slide_ms) {
                        return Ok(None);
                    }
                    history.items().flatten().map(|v| single(v)).collect()
                };
                let value = self.reduce_all(n, *c, types, window)?;
                Some(value.map(|v| vec![single(&v)]).unwrap_or_default())
            }
            _ => return Err(anyhow!("internal error: node {n} has no state for {op:?}")),
        })
    }

    /// Every value of `parts` combined into one: per partition on the pool, then the partials.
    fn reduce_all(
        &mut self,
        n: usize,
        combine: Combine,
        types: &StreamType,
        parts: Vec<Batch>,
    ) -> Result<Option<Vec<u8>>> {
        let task = |id: TaskId, batches: Vec<Batch>| {
            let (plan, types) = (self.plan.clone(), types.clone());
            let mut batches = batches;
            move |worker: &mut Worker| {
                attempt(worker, &plan, id, &mut batches, &types, |w, batches| {
                    let (mut folder, _) = w.folder(combine)?;
                    fold_all(&mut folder, batches)
                })
                .map(|(value, figures)| (Some(value.flatten()), figures))
            }
        };
        let tasks: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(p, batch)| task(self.id(n, p), vec![batch]))
            .collect();
        let partials: Vec<Option<Vec<u8>>> = self.run_tasks(tasks)?;
        let partials: Vec<Batch> = partials.into_iter().flatten().map(|v| single(&v)).collect();
        if partials.len() <= 1 {
            return Ok(partials.first().map(|b| b.values.get(0).to_vec()));
        }
        let finals: Vec<Option<Vec<u8>>> = self.run_tasks(vec![task(self.id(n, 0), partials)])?;
        Ok(finals.into_iter().next().flatten())
    }
}

/// One unkeyed record.
fn single(value: &[u8]) -> Batch {
    Batch {
        keys: None,
        values: Column::from_values([value]),
        timestamps: Vec::new(),
    }
}

/// Every value of `batches` folded into the first, in one call.
fn fold_all(folder: &mut Folder<'_>, batches: &[Batch]) -> Result<Option<Vec<u8>>> {
    let mut values = batches.iter().flat_map(|b| b.values.iter());
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let rest = Column::from_values(values);
    let targets = vec![0; rest.len()];
    let folded = folder.fold(Column::from_values([first]), &targets, rest)?;
    Ok(Some(folded.get(0).to_vec()))
}

/// What a reduce-side task hands on.
#[derive(Default)]
struct ReduceOutput {
    /// The main stream's partition; none at a time the node's slide skips.
    main: Option<Batch>,
    /// The side stream's partition (snapshots, late records).
    side: Option<Batch>,
    late_records: u64,
}

/// One shuffle partition's task of keyed node `n`. `buckets` holds the left side's buckets,
/// then (for two-sided ops) the right side's, from index `left` on.
#[allow(clippy::too_many_arguments)]
fn reduce_side(
    worker: &mut Worker,
    plan: &Plan,
    state: &JobState,
    n: usize,
    r: usize,
    time: u64,
    left: usize,
    marks: Option<Watermarks>,
    buckets: &mut [Batch],
) -> Result<ReduceOutput> {
    let NodeKind::Keyed { op, .. } = &plan.nodes[n].kind else {
        unreachable!()
    };
    let main = |batch: Batch| ReduceOutput {
        main: Some(batch),
        ..ReduceOutput::default()
    };
    let node_state = &state.nodes[n];
    Ok(match (op, node_state) {
        (KeyedOp::Reduce(c), _) => {
            let (mut folder, scratch) = worker.folder(*c)?;
            main(combine_by_key(scratch, buckets, &mut folder)?.batch)
        }
        (KeyedOp::Group, _) => main(group_by_key(buckets)?),
        (KeyedOp::Pass, _) => {
            let mut all = Batch::default();
            for bucket in buckets.iter() {
                all.extend_from(bucket);
            }
            main(all)
        }
        (KeyedOp::Join(kind), _) => main(join(&buckets[..left], &buckets[left..], *kind)?),
        (KeyedOp::Cogroup, _) => main(cogroup(&buckets[..left], &buckets[left..])?),
        (
            KeyedOp::WindowReduce {
                combine,
                inverse,
                window,
            },
            NodeState::Window(parts),
        ) => {
            let spec = WindowReduce {
                combine: *combine,
                inverse: *inverse,
                window: *window,
            };
            ReduceOutput {
                main: lock(&parts[r]).step(worker, spec, time, buckets)?,
                ..ReduceOutput::default()
            }
        }
        (KeyedOp::State { operator, mode, .. }, NodeState::Keyed(parts)) => {
            let snapshots = plan.nodes[n].outputs.len() > 1;
            let step = lock(&parts[r]).step(worker, *operator, *mode, snapshots, time, buckets)?;
            ReduceOutput {
                main: Some(step.output),
                side: step.snapshot,
                late_records: 0,
            }
        }
        (
            KeyedOp::EventWindow {
                combine, window, ..
            },
            NodeState::EventTime(parts, _),
        ) => {
            let marks = marks.expect("watermarks computed for event-time nodes");
            let step = lock(&parts[r]).step(worker, *combine, *window, marks, buckets)?;
            ReduceOutput {
                main: Some(step.closed),
                late_records: step.late.len() as u64,
                side: Some(step.late),
            }
        }
        _ => return Err(anyhow!("internal error: node {n} has no state for {op:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;
    use crate::wasm::ComponentCache;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A plan of `steps` (and `outputs`) over a socket source, built from a pipeline file.
    fn plan(steps_and_outputs: &str) -> Arc<Plan> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        let text = format!(
            "[sources.lines]\ntype = \"socket\"\nhost = \"127.0.0.1\"\nport = 9\n\n{steps_and_outputs}"
        );
        std::fs::write(&path, text).unwrap();
        let pipeline = Pipeline::load(&path, &["job.workers=2".into()]).unwrap();
        Arc::new(Plan::build(&pipeline, &ComponentCache::disabled()).unwrap())
    }

    /// Runs one batch of three blocks; returns (input bytes, bytes the tasks released).
    fn released_by(plan: &Arc<Plan>) -> (usize, usize) {
        let pool = WorkerPool::new(2, plan.operators.clone()).unwrap();
        let state = Arc::new(JobState::new(plan, 0).unwrap());
        let blocks: Vec<Block> = ["a b a", "b c", "c c c d"]
            .iter()
            .map(|line| Block {
                source: 0,
                lines: Column::from_values([line.as_bytes(), b"x"]),
                progress: Vec::new(),
            })
            .collect();
        let input: usize = blocks.iter().map(|b| b.lines.data.len()).sum();
        let handed = Arc::new(AtomicUsize::new(0));
        let to = handed.clone();
        let release = InputRelease::new(move |bytes| {
            to.fetch_add(bytes, Ordering::SeqCst);
        });
        run_batch(&pool, plan, &state, blocks, (1000, false), &release).unwrap();
        assert_eq!(release.released(), handed.load(Ordering::SeqCst));
        (input, release.released())
    }

    #[test]
    fn map_tasks_release_the_source_blocks_they_consume() {
        let counts = "[[steps]]\nop = \"count-by-value\"\n\n[[outputs]]\ntype = \"print\"\n";
        let (input, released) = released_by(&plan(counts));
        assert_eq!(released, input);
    }

    #[test]
    fn blocks_another_reader_keeps_are_not_released() {
        // The output prints the source stream itself: its blocks live to the end of the batch.
        let both = "[[steps]]\nop = \"count-by-value\"\n\n[[outputs]]\ntype = \"print\"\n\n\
                    [[outputs]]\ntype = \"print\"\nfrom = \"lines\"\n";
        let (_, released) = released_by(&plan(both));
        assert_eq!(released, 0);
    }

    #[test]
    fn blocks_two_inputs_of_one_node_read_are_not_released_twice() {
        // Both sides of the join are the source's lines through a fused flat-map: one side's
        // tasks get a copy of the blocks, so neither may hand their bytes back.
        let self_join = "[[steps]]\nname = \"a\"\nop = \"flat-map\"\nplugin = \"tokenize\"\n\
                         from = \"lines\"\n\n[[steps]]\nname = \"b\"\nop = \"flat-map\"\n\
                         plugin = \"tokenize\"\nfrom = \"lines\"\n\n[[steps]]\nop = \"join\"\n\
                         from = [\"a\", \"b\"]\n\n[[outputs]]\ntype = \"print\"\n";
        let (_, released) = released_by(&plan(self_join));
        assert_eq!(released, 0);
    }
}
