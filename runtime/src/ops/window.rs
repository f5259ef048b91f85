//! window, count-by-window and reduce-by-window: over the last `length` of batches, every
//! `slide`, with no key. Each keeps a history of what each batch in the window contributed:
//! its records, its count, or its reduced value.

use super::count::count;
use super::{Family, Planned, StepPlanner, WindowSpec};
use crate::batch::partition_bytes;
use crate::checkpoint::{Reader, Writer};
use crate::config::{ConfigError, StepOp};
use crate::exec::{Combine, Dataflow, GlobalOp, GlobalTask, NodeKind, single};
use crate::record::{Shape, StreamType};
use crate::state::{History, NodeState, decode_batch, downcast, encode_batch, lock};
use anyhow::Result;
use spate_guest::Partition;
use std::any::Any;
use std::sync::{Arc, Mutex};

/// The family of windows over whole batches.
pub struct Window;

impl Family for Window {
    fn ops(&self) -> &'static [StepOp] {
        &[
            StepOp::Window,
            StepOp::CountByWindow,
            StepOp::ReduceByWindow,
        ]
    }

    fn fields(&self, op: StepOp) -> &'static [&'static str] {
        match op {
            StepOp::ReduceByWindow => &["plugin", "params", "length", "slide"],
            _ => &["length", "slide"],
        }
    }

    fn plan(&self, step: &mut StepPlanner<'_>) -> Result<Planned, ConfigError> {
        let window = step.window()?;
        let unkeyed = |value: Shape| StreamType { key: None, value };
        let (op, types): (Arc<dyn GlobalOp>, StreamType) = match step.op {
            StepOp::Window => (Arc::new(Batches(window)), step.types[0].clone()),
            StepOp::CountByWindow => (Arc::new(Counts(window)), unkeyed(Shape::I64)),
            _ => {
                let combine = step.combiner()?;
                let types = unkeyed(step.types[0].value.clone());
                (Arc::new(Values(combine, window)), types)
            }
        };
        Ok(Planned {
            kind: NodeKind::Global {
                input: step.inputs[0],
                op,
            },
            types,
            slide_ms: window.slide_ms,
        })
    }
}

/// A history of per-batch items, as a node's state.
struct Kept<T> {
    tag: u64,
    history: Mutex<History<T>>,
    encode: fn(&T, &mut Writer),
    decode: fn(&mut Reader<'_>) -> Result<T>,
    records: fn(&T) -> usize,
    bytes: fn(&T) -> usize,
}

impl<T: Send + 'static> NodeState for Kept<T> {
    fn tag(&self) -> u64 {
        self.tag
    }

    fn encode(&self, out: &mut Writer) {
        lock(&self.history).encode(out, self.encode);
    }

    fn decode(&self, input: &mut Reader<'_>) -> Result<()> {
        *lock(&self.history) = History::decode(input, self.decode)?;
        Ok(())
    }

    fn records(&self) -> usize {
        lock(&self.history).items().map(self.records).sum()
    }

    fn bytes(&self) -> usize {
        lock(&self.history).items().map(self.bytes).sum()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The items of `task`'s state, pushed with this batch's, and the window's at a slide time.
fn slide<T: Send + 'static, R>(
    task: &GlobalTask<'_, '_>,
    window: WindowSpec,
    item: T,
    at_slide: impl FnOnce(&History<T>) -> R,
) -> Result<Option<R>> {
    let kept = downcast::<Kept<T>>(task.state())?;
    let mut history = lock(&kept.history);
    history.push(task.time(), item, window.length_ms);
    Ok(task
        .time()
        .is_multiple_of(window.slide_ms)
        .then(|| at_slide(&history)))
}

/// window: the records of the window's batches.
#[derive(Debug)]
struct Batches(WindowSpec);

impl GlobalOp for Batches {
    fn new_state(&self) -> Option<Box<dyn NodeState>> {
        Some(Box::new(Kept::<Vec<Partition>> {
            tag: 4,
            history: Mutex::default(),
            encode: |batches, out| {
                out.u64(batches.len() as u64);
                for b in batches {
                    encode_batch(b, out);
                }
            },
            decode: |input| {
                let mut batches = Vec::new();
                for _ in 0..input.u64()? {
                    batches.push(decode_batch(input)?);
                }
                Ok(batches)
            },
            records: |batches| batches.iter().map(Partition::len).sum(),
            bytes: |batches| batches.iter().map(partition_bytes).sum(),
        }))
    }

    fn state_layout(&self) -> Option<String> {
        Some(format!("window, {}", self.0.layout()))
    }

    fn run(
        &self,
        task: &mut GlobalTask<'_, '_>,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<Partition>>> {
        slide(task, self.0, parts, |history| {
            history.items().flatten().cloned().collect()
        })
    }

    fn describe(&self, _: &Dataflow) -> String {
        format!("window of {}", self.0.describe())
    }
}

/// count-by-window: the records in the window, counted.
#[derive(Debug)]
struct Counts(WindowSpec);

impl GlobalOp for Counts {
    fn new_state(&self) -> Option<Box<dyn NodeState>> {
        Some(Box::new(Kept::<i64> {
            tag: 5,
            history: Mutex::default(),
            encode: |n, out| out.u64(*n as u64),
            decode: |input| Ok(input.u64()? as i64),
            records: |_| 0,
            bytes: |_| std::mem::size_of::<i64>(),
        }))
    }

    fn state_layout(&self) -> Option<String> {
        Some(format!("count-by-window, {}", self.0.layout()))
    }

    fn run(
        &self,
        task: &mut GlobalTask<'_, '_>,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<Partition>>> {
        slide(task, self.0, count(&parts), |history| {
            let total: i64 = history.items().sum();
            vec![single(&total.to_le_bytes())]
        })
    }

    fn describe(&self, _: &Dataflow) -> String {
        format!("count over a window of {}", self.0.describe())
    }
}

/// reduce-by-window: each batch reduced, then the window's values reduced.
#[derive(Debug)]
struct Values(Combine, WindowSpec);

impl GlobalOp for Values {
    fn new_state(&self) -> Option<Box<dyn NodeState>> {
        Some(Box::new(Kept::<Option<Vec<u8>>> {
            tag: 6,
            history: Mutex::default(),
            encode: |v, out| match v {
                Some(v) => {
                    out.u64(1);
                    out.bytes(v);
                }
                None => out.u64(0),
            },
            decode: |input| {
                Ok(match input.u64()? {
                    0 => None,
                    _ => Some(input.bytes()?.to_vec()),
                })
            },
            records: |_| 0,
            bytes: |v| v.as_ref().map_or(0, Vec::len),
        }))
    }

    fn state_layout(&self) -> Option<String> {
        Some(format!("reduce-by-window, {}", self.1.layout()))
    }

    fn run(
        &self,
        task: &mut GlobalTask<'_, '_>,
        parts: Vec<Partition>,
    ) -> Result<Option<Vec<Partition>>> {
        let value = task.reduce_all(self.0, parts)?;
        let window = slide(task, self.1, value, |history| {
            history.items().flatten().map(|v| single(v)).collect()
        })?;
        let Some(window) = window else {
            return Ok(None);
        };
        let value = task.reduce_all(self.0, window)?;
        Ok(Some(value.map(|v| vec![single(&v)]).unwrap_or_default()))
    }

    fn describe(&self, dataflow: &Dataflow) -> String {
        format!(
            "reduce with {} over a window of {}",
            dataflow.combine_name(self.0),
            self.1.describe()
        )
    }

    fn combiner(&self) -> Option<usize> {
        self.0.wasm_operator()
    }
}
