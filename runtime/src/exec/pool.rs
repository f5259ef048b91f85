//! A fixed pool of worker threads, each holding one warm instance per operator.

use super::dataflow::Combine;
use crate::fault::host_fault;
use crate::shuffle::{CombineScratch, Folder};
use crate::wasm::{OperatorInstance, PreparedOperator, StateInstance, TransformInstance};
use anyhow::{Result, anyhow};
use crossbeam_channel::{Receiver, Sender, unbounded};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

type Task = Box<dyn FnOnce(&mut Worker) + Send>;

/// A worker thread's state: its operator instances (created on first use, kept across batches,
/// replaced after a trap) and reusable buffers.
pub struct Worker {
    operators: Arc<Vec<Arc<PreparedOperator>>>,
    instances: Vec<Option<OperatorInstance>>,
    /// The batch the worker last ran a task of.
    batch_time: Option<u64>,
    /// Buffers for combine-by-key.
    pub scratch: CombineScratch,
}

/// The live instance of operator `index`, created on first use or after a trap.
fn instance<'a>(
    instances: &'a mut [Option<OperatorInstance>],
    operators: &[Arc<PreparedOperator>],
    index: usize,
) -> Result<&'a mut OperatorInstance> {
    let slot = &mut instances[index];
    if slot.as_ref().is_none_or(OperatorInstance::is_poisoned) {
        *slot = Some(OperatorInstance::new(&operators[index])?);
    }
    Ok(slot.as_mut().expect("instantiated above"))
}

impl Worker {
    /// Called at the start of each task: a new batch renews each instance's log budget.
    pub fn begin_batch(&mut self, batch_time: u64) {
        if self.batch_time != Some(batch_time) {
            self.batch_time = Some(batch_time);
            for instance in self.instances.iter_mut().flatten() {
                instance.begin_batch();
            }
        }
    }

    /// Drops every instance, so that a retried task runs on fresh ones.
    pub fn discard_instances(&mut self) {
        for slot in &mut self.instances {
            *slot = None;
        }
    }

    /// The transform instance of operator `index`.
    pub fn transform(&mut self, index: usize) -> Result<&mut TransformInstance> {
        match instance(&mut self.instances, &self.operators, index)? {
            OperatorInstance::Transform(t) => Ok(t),
            _ => Err(host_fault(format!("operator {index} is not a transform"))),
        }
    }

    /// The state operator instance of operator `index`.
    pub fn state(&mut self, index: usize) -> Result<&mut StateInstance> {
        match instance(&mut self.instances, &self.operators, index)? {
            OperatorInstance::State(t) => Ok(t),
            _ => Err(host_fault(format!(
                "operator {index} is not a state operator"
            ))),
        }
    }

    /// The combine function `combine`, with the scratch buffers.
    pub fn folder(&mut self, combine: Combine) -> Result<(Folder<'_>, &mut CombineScratch)> {
        let folder = match combine {
            Combine::SumI64 => Folder::SumI64,
            Combine::SubI64 => Folder::SubI64,
            Combine::Wasm(index) => match instance(&mut self.instances, &self.operators, index)? {
                OperatorInstance::Combiner(c) => Folder::Wasm(c),
                _ => return Err(host_fault(format!("operator {index} is not a combiner"))),
            },
        };
        Ok((folder, &mut self.scratch))
    }
}

/// The pool. Dropping it stops the threads after their current task.
pub struct WorkerPool {
    sender: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `workers` threads for `operators`.
    pub fn new(workers: usize, operators: Vec<Arc<PreparedOperator>>) -> Result<WorkerPool> {
        let operators = Arc::new(operators);
        let (sender, receiver) = unbounded::<Task>();
        let threads = (0..workers)
            .map(|id| {
                let receiver: Receiver<Task> = receiver.clone();
                let mut worker = Worker {
                    instances: operators.iter().map(|_| None).collect(),
                    operators: operators.clone(),
                    batch_time: None,
                    scratch: CombineScratch::default(),
                };
                // Log lines from the worker carry the job's span (its name, in multi-job runs).
                let span = tracing::Span::current();
                std::thread::Builder::new()
                    .name(format!("spate-worker-{id}"))
                    .spawn(move || {
                        let _entered = span.enter();
                        for task in receiver {
                            task(&mut worker);
                        }
                    })
                    .map_err(|e| anyhow!("cannot start worker thread {id}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WorkerPool {
            sender: Some(sender),
            threads,
        })
    }

    /// Runs every task on the pool and returns their results in task order. A task that panics
    /// (a host bug) becomes an error for its slot; the pool lives on.
    pub fn run_all<T, F>(&self, tasks: Vec<F>) -> Vec<Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<T> + Send + 'static,
    {
        let count = tasks.len();
        let (done, results) = unbounded::<(usize, Result<T>)>();
        let sender = self.sender.as_ref().expect("the pool is running");
        for (index, task) in tasks.into_iter().enumerate() {
            let done = done.clone();
            let wrapped: Task = Box::new(move |worker: &mut Worker| {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| task(worker)))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(host_fault(format!("a task panicked: {what}")))
                    });
                let _ = done.send((index, result));
            });
            if sender.send(wrapped).is_err() {
                break;
            }
        }
        drop(done);
        let mut slots: Vec<Option<Result<T>>> = (0..count).map(|_| None).collect();
        for (index, result) in results {
            slots[index] = Some(result);
        }
        slots
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| Err(host_fault("a worker thread died"))))
            .collect()
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.sender.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
