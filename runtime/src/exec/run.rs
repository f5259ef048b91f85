//! One batch through the dataflow: the nodes in order, each as tasks on the worker pool; a stream
//! is handed to its last reader (copied for the others) and dropped once read.

use super::dataflow::{
    Combine, Dataflow, KeyedInput, KeyedOp, NodeKind, ReduceOutput, ReduceTask, StreamId,
};
use super::input_release::InputRelease;
use super::keyed::{
    PartitionQueue, append_buckets, map_side, map_side_deferred, split_last_partitions,
};
use super::narrow;
use super::pool::{Worker, WorkerPool};
use super::tasks::{Phase, Size, TaskClock, TaskFigures, TaskId, TaskOutput, attempt};
use crate::batch::Block;
use crate::record::StreamType;
use crate::shuffle::Folder;
use crate::state::{JobState, NodeState};
use anyhow::Result;
use spate_guest::{Column, Partition};
use std::sync::Arc;

/// A map-side task of a keyed node: its buckets, one per shuffle partition.
type MapTask =
    Box<dyn FnOnce(&mut Worker) -> Result<(Option<Vec<Partition>>, TaskFigures)> + Send + 'static>;

/// A map task's buckets; a skipped task sends empty ones.
fn skipped_as_empty(out: Option<Vec<Partition>>, partitions: usize) -> Vec<Partition> {
    out.unwrap_or_else(|| vec![Partition::default(); partitions])
}

/// One input of a keyed node, as its map tasks see it.
struct MapInput {
    dataflow: Arc<Dataflow>,
    input: KeyedInput,
    /// Shuffle partitions.
    partitions: usize,
}

/// The map side of a keyed node over one partition of `side`, with the job's retries and
/// failure policy.
fn map_task(
    worker: &mut Worker,
    side: &MapInput,
    id: TaskId,
    batch: Partition,
) -> Result<(Option<Vec<Partition>>, TaskFigures)> {
    let MapInput {
        dataflow,
        input,
        partitions,
    } = side;
    attempt(
        worker,
        dataflow,
        id,
        &mut [batch],
        &input.types,
        |w, batches| {
            let out = narrow::apply(w, dataflow, &input.narrow, &mut batches[0])?;
            let batch = out.as_ref().unwrap_or(&batches[0]);
            map_side(w, input, *partitions, id.partition, batch)
        },
    )
    .map(|(out, figures)| (Some(skipped_as_empty(out, *partitions)), figures))
}

/// The map side of a keyed node over the partitions of `side` this worker takes from `queue`,
/// with `operator` holding its combined output until the queue is empty. If that fails, the
/// instances are dropped (with whatever they held) and the partitions it took, and those still
/// queued, run one by one through [`map_task`], so that retries and the failure policy work on
/// the partition that failed, as without the grouping.
fn map_share_task(
    worker: &mut Worker,
    side: &MapInput,
    operator: usize,
    batch_time: u64,
    queue: &PartitionQueue<TaskId>,
    release: Option<&InputRelease>,
) -> Result<(Option<Vec<Partition>>, TaskFigures)> {
    let (dataflow, input, partitions) = (&side.dataflow, &side.input, side.partitions);
    worker.begin_batch(batch_time);
    let clock = TaskClock::start();
    let mut taken = Vec::new();
    let mut taken_bytes = 0;
    let mut taken_records = 0;
    let next = || {
        let part = queue.take();
        if let Some((_, batch)) = &part {
            taken_bytes += crate::batch::partition_bytes(batch);
            taken_records += batch.len() as u64;
        }
        part
    };
    let held = map_side_deferred(
        worker, dataflow, input, operator, partitions, next, &mut taken,
    );
    let error = match held {
        Ok(buckets) => {
            let mut figures = TaskFigures::default();
            if let Some((first, _)) = taken.first() {
                let input = Size {
                    records: taken_records,
                    bytes: taken_bytes as u64,
                };
                let record = clock.record(*first, taken.len(), input, buckets.size());
                figures.tasks.push(record);
            }
            drop(taken);
            if let Some(release) = release {
                release.release(taken_bytes);
            }
            return Ok((Some(buckets), figures));
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
        let (out, more) = map_task(worker, side, id, batch)?;
        append_buckets(&mut buckets, skipped_as_empty(out, partitions));
        figures.add(more);
    }
    Ok((Some(buckets), figures))
}

/// A stream's batch at this batch time: its partitions, or none at times its slide skips.
type StreamBatch = Option<Vec<Partition>>;

/// What a batch produced: the batch of each stream an output reads (by stream id; the others
/// are `None`), and the tasks' figures.
pub struct BatchOutput {
    /// Stream batches, by stream id.
    pub streams: Vec<StreamBatch>,
    /// Retries, skips, late records.
    pub figures: TaskFigures,
}

/// Runs every node of `dataflow` over a batch's input blocks; `end_of_input` for the last batch of
/// bounded input. Tasks that read input blocks and drop them report their bytes to `release`
/// (the rest is the caller's to release when the batch is done).
pub fn run_batch(
    pool: &WorkerPool,
    dataflow: &Arc<Dataflow>,
    state: &Arc<JobState>,
    blocks: Vec<Block>,
    (time, end_of_input): (u64, bool),
    release: &InputRelease,
) -> Result<BatchOutput> {
    let mut run = BatchRun {
        pool,
        dataflow,
        state,
        time,
        end_of_input,
        streams: vec![None; dataflow.streams.len()],
        readers: readers(dataflow),
        figures: TaskFigures::default(),
        source_streams: dataflow
            .nodes
            .iter()
            .filter(|node| matches!(node.kind, NodeKind::Source(_)))
            .flat_map(|node| node.outputs.iter().copied())
            .collect(),
        release: release.clone(),
    };
    let sources = dataflow
        .nodes
        .iter()
        .filter(|node| matches!(node.kind, NodeKind::Source(_)))
        .count();
    let mut per_source: Vec<Vec<Partition>> = (0..sources).map(|_| Vec::new()).collect();
    for block in blocks {
        per_source[block.source].push(block.records);
    }
    for (n, node) in dataflow.nodes.iter().enumerate() {
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
fn readers(dataflow: &Dataflow) -> Vec<usize> {
    let mut readers = vec![0; dataflow.streams.len()];
    for node in &dataflow.nodes {
        for s in node.kind.inputs() {
            readers[s] += 1;
        }
    }
    // Outputs read after every node, all from one copy: one more reader that never takes it.
    let mut output_streams: Vec<StreamId> = dataflow.output_streams.clone();
    output_streams.sort_unstable();
    output_streams.dedup();
    for s in output_streams {
        readers[s] += 1;
    }
    readers
}

/// One batch's run through the dataflow.
struct BatchRun<'a> {
    pool: &'a WorkerPool,
    dataflow: &'a Arc<Dataflow>,
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

    fn id(&self, node: usize, phase: Phase, partition: usize) -> TaskId {
        TaskId {
            batch_time: self.time,
            node,
            phase,
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
    fn node(&mut self, n: usize, mut inputs: Vec<Vec<Partition>>) -> Result<Vec<StreamBatch>> {
        let dataflow = self.dataflow.clone();
        let node = &dataflow.nodes[n];
        match &node.kind {
            NodeKind::Source(_) => unreachable!("sources are read from the blocks"),
            NodeKind::Union(_) => Ok(vec![Some(inputs.into_iter().flatten().collect())]),
            NodeKind::Narrow { input, steps } => {
                let types = dataflow.streams[*input].types.clone();
                let tasks = inputs
                    .pop()
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                    .map(|(p, batch)| {
                        let (dataflow, id, types) = (
                            dataflow.clone(),
                            self.id(n, Phase::Narrow, p),
                            types.clone(),
                        );
                        let steps = steps.clone();
                        move |worker: &mut Worker| {
                            attempt(worker, &dataflow, id, &mut [batch], &types, |w, inputs| {
                                let out = narrow::apply(w, &dataflow, &steps, &mut inputs[0])?;
                                Ok(out.unwrap_or_else(|| inputs[0].clone()))
                            })
                        }
                    })
                    .collect();
                Ok(vec![Some(self.run_tasks(tasks)?)])
            }
            NodeKind::Keyed {
                inputs: sides,
                partitions,
                op,
            } => self.keyed(n, sides, *partitions, op, inputs),
            NodeKind::Global { input, op } => {
                let parts = inputs.pop().unwrap_or_default();
                let types = dataflow.streams[*input].types.clone();
                let state = self.state.clone();
                let mut task = GlobalTask {
                    run: self,
                    node: n,
                    types: &types,
                    state: state.of(n),
                };
                op.run(&mut task, parts).map(|out| vec![out])
            }
        }
    }

    /// A keyed node: the map side over every input partition, the shuffle, then one task per
    /// shuffle partition.
    fn keyed(
        &mut self,
        n: usize,
        sides: &[KeyedInput],
        partitions: usize,
        op: &Arc<dyn KeyedOp>,
        inputs: Vec<Vec<Partition>>,
    ) -> Result<Vec<StreamBatch>> {
        let dataflow = self.dataflow.clone();
        let mut tasks = Vec::new();
        let mut side_tasks = Vec::new();
        let side_streams: Vec<StreamId> = sides.iter().map(|s| s.stream).collect();
        for (side, parts) in inputs.into_iter().enumerate() {
            let release = self.release_for(side_streams[side], &side_streams);
            let first_id = tasks.len();
            let deferring = dataflow.deferring_operator(&sides[side]);
            let parts = match deferring {
                Some(_) => split_last_partitions(parts, dataflow.tasks.workers),
                None => parts,
            };
            let parts: Vec<(TaskId, Partition)> = parts
                .into_iter()
                .enumerate()
                .map(|(p, batch)| (self.id(n, Phase::Map, first_id + p), batch))
                .collect();
            let map_input = Arc::new(MapInput {
                dataflow: dataflow.clone(),
                input: sides[side].clone(),
                partitions,
            });
            if let Some(operator) = deferring {
                // One task per worker, each holding its combined output over the partitions
                // it takes.
                let workers = dataflow.tasks.workers.clamp(1, parts.len().max(1));
                let queue = Arc::new(PartitionQueue::new(parts));
                side_tasks.push(workers);
                for _ in 0..workers {
                    let (map_input, queue, time) = (map_input.clone(), queue.clone(), self.time);
                    let release = release.clone();
                    tasks.push(Box::new(move |worker: &mut Worker| {
                        let release = release.as_ref();
                        map_share_task(worker, &map_input, operator, time, &queue, release)
                    }) as MapTask);
                }
                continue;
            }
            side_tasks.push(parts.len());
            for (id, batch) in parts {
                let (map_input, release) = (map_input.clone(), release.clone());
                tasks.push(Box::new(move |worker: &mut Worker| {
                    let bytes = crate::batch::partition_bytes(&batch);
                    let out = map_task(worker, &map_input, id, batch);
                    if let Some(release) = release {
                        release.release(bytes);
                    }
                    out
                }) as MapTask);
            }
        }
        let map_outputs: Vec<Vec<Partition>> = self.run_tasks(tasks)?;
        // Reduce partition r reads bucket r of every map task, the left side's first.
        let left = side_tasks.first().copied().unwrap_or(0);
        let mut reduce_inputs: Vec<Vec<Partition>> = (0..partitions).map(|_| Vec::new()).collect();
        for buckets in map_outputs {
            for (r, bucket) in buckets.into_iter().enumerate() {
                reduce_inputs[r].push(bucket);
            }
        }
        let marks = op.watermarks(self.state.of(n), &reduce_inputs, self.end_of_input)?;
        let side_output = dataflow.nodes[n].outputs.len() > 1;
        let types = sides[0].types.clone();
        let tasks = reduce_inputs
            .into_iter()
            .enumerate()
            .map(|(r, buckets)| {
                let (dataflow, state, types) =
                    (dataflow.clone(), self.state.clone(), types.clone());
                let (id, time, op) = (self.id(n, Phase::Reduce, r), self.time, op.clone());
                let mut buckets = buckets;
                move |worker: &mut Worker| {
                    attempt(worker, &dataflow, id, &mut buckets, &types, |w, buckets| {
                        let task = ReduceTask {
                            worker: w,
                            state: state.of(n),
                            partition: r,
                            time,
                            left,
                            marks,
                            side_output,
                        };
                        op.reduce(task, buckets)
                    })
                }
            })
            .collect();
        let results: Vec<ReduceOutput> = self.run_tasks(tasks)?;
        let emitted = op.emits_at(self.time);
        self.figures.late_records += results.iter().map(|r| r.late_records).sum::<u64>();
        let mut main = Vec::with_capacity(results.len());
        let mut side = Vec::new();
        for result in results {
            main.extend(result.main);
            side.extend(result.side);
        }
        let mut outputs = vec![emitted.then_some(main)];
        if side_output {
            outputs.push(Some(side));
        }
        Ok(outputs)
    }

    /// Every value of `parts` combined into one: per partition on the pool, then the partials.
    fn reduce_all(
        &mut self,
        n: usize,
        combine: Combine,
        types: &StreamType,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<u8>>> {
        let task = |id: TaskId, batches: Vec<Partition>| {
            let (dataflow, types) = (self.dataflow.clone(), types.clone());
            let mut batches = batches;
            move |worker: &mut Worker| {
                attempt(worker, &dataflow, id, &mut batches, &types, |w, batches| {
                    let (mut folder, _) = w.folder(combine)?;
                    fold_all(&mut folder, batches)
                })
                .map(|(value, figures)| (Some(value.flatten()), figures))
            }
        };
        let tasks: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(p, batch)| task(self.id(n, Phase::Combine, p), vec![batch]))
            .collect();
        let partials: Vec<Option<Vec<u8>>> = self.run_tasks(tasks)?;
        let partials: Vec<Partition> = partials.into_iter().flatten().map(|v| single(&v)).collect();
        if partials.len() <= 1 {
            return Ok(partials.first().map(|b| b.values.get(0).to_vec()));
        }
        let finals: Vec<Option<Vec<u8>>> =
            self.run_tasks(vec![task(self.id(n, Phase::Combine, 0), partials)])?;
        Ok(finals.into_iter().next().flatten())
    }
}

/// What a global op's run works with: the batch time, the node's state and the pool.
pub struct GlobalTask<'r, 'a> {
    run: &'r mut BatchRun<'a>,
    node: usize,
    types: &'r StreamType,
    state: Option<&'r dyn NodeState>,
}

impl GlobalTask<'_, '_> {
    /// The batch time.
    pub fn time(&self) -> u64 {
        self.run.time
    }

    /// The node's state, if it keeps any.
    pub fn state(&self) -> Option<&dyn NodeState> {
        self.state
    }

    /// Every value of `parts` combined into one with `combine`: per partition on the pool,
    /// then the partials. None when there is no value.
    pub fn reduce_all(
        &mut self,
        combine: Combine,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<u8>>> {
        self.run.reduce_all(self.node, combine, self.types, parts)
    }
}

/// One unkeyed record.
pub fn single(value: &[u8]) -> Partition {
    Partition {
        keys: None,
        values: Column::from_values([value]),
        timestamps: Vec::new(),
    }
}

/// Every value of `batches` folded into the first, in one call.
fn fold_all(folder: &mut Folder<'_>, batches: &[Partition]) -> Result<Option<Vec<u8>>> {
    let mut values = batches.iter().flat_map(|b| b.values.iter());
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let rest = Column::from_values(values);
    let targets = vec![0; rest.len()];
    let folded = folder.fold(Column::from_values([first]), &targets, rest)?;
    Ok(Some(folded.get(0).to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pipeline;
    use crate::plan::Plan;
    use crate::wasm::ComponentCache;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A plan of `steps` (and `outputs`) over a socket source, built from a pipeline file.
    fn plan(steps_and_outputs: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipeline.toml");
        let text = format!(
            "[sources.lines]\ntype = \"socket\"\nhost = \"127.0.0.1\"\nport = 9\n\n{steps_and_outputs}"
        );
        std::fs::write(&path, text).unwrap();
        let pipeline = Pipeline::load(&path, &["job.workers=2".into()]).unwrap();
        Plan::build(&pipeline, &ComponentCache::disabled()).unwrap()
    }

    /// Runs one batch of three blocks; returns (input bytes, bytes the tasks released).
    fn released_by(plan: &Plan) -> (usize, usize) {
        let dataflow = &plan.dataflow;
        let pool = WorkerPool::new(2, dataflow.operators.clone()).unwrap();
        let state = Arc::new(dataflow.new_state(0).unwrap());
        let blocks: Vec<Block> = ["a b a", "b c", "c c c d"]
            .iter()
            .map(|line| Block {
                source: 0,
                records: Partition::from_lines([*line, "x"]),
                progress: Vec::new(),
            })
            .collect();
        let input: usize = blocks.iter().map(Block::bytes).sum();
        let handed = Arc::new(AtomicUsize::new(0));
        let to = handed.clone();
        let release = InputRelease::new(move |bytes| {
            to.fetch_add(bytes, Ordering::SeqCst);
        });
        run_batch(&pool, dataflow, &state, blocks, (1000, false), &release).unwrap();
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
