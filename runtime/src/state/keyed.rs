//! updateStateByKey and mapWithState: one shuffle partition's keyed state.
//!
//! The state operator is called once per partition and batch with every key to update: the
//! keys with new data (their values in arrival order), plus every other key for
//! updateStateByKey, or the keys timing out for mapWithState. Each key's state crosses the
//! boundary once, in and out. mapWithState's cost grows with the keys touched: keys due to
//! time out are found through a queue ordered by update time, not by scanning the state.

use super::table::StateTable;
use crate::checkpoint::{Reader, Writer};
use crate::exec::{Worker, group_values};
use crate::plan::StateMode;
use anyhow::Result;
use spate_guest::{Batch, Column, StateInput, StateOutput};
use std::collections::{HashSet, VecDeque};

/// The keyed state of one shuffle partition. A key's meta is the time of its last update.
#[derive(Default)]
pub struct StatePartition {
    table: StateTable,
    /// (update time, slot) of each update, oldest first; stale entries (the key was updated
    /// again or removed since) are skipped when they come up.
    timeouts: VecDeque<(u64, u32)>,
}

/// What one batch produced.
pub struct StateStep {
    /// The main output: the whole state (updateStateByKey) or what the operator emitted.
    pub output: Batch,
    /// mapWithState's snapshot stream, if asked for: (key, state) of every key in state.
    pub snapshot: Option<Batch>,
}

impl StatePartition {
    /// Appends the state and the pending timeouts (by key: slots are renumbered on reading) to
    /// a checkpoint.
    pub fn encode(&self, out: &mut Writer) {
        self.table.encode(out);
        let current: Vec<(u64, u32)> = self
            .timeouts
            .iter()
            .copied()
            .filter(|&(t, slot)| self.table.is_alive(slot) && self.table.meta(slot) == t)
            .collect();
        out.u64(current.len() as u64);
        for (time, slot) in current {
            out.u64(time);
            out.bytes(self.table.key(slot));
        }
    }

    /// Reads a partition written by [`StatePartition::encode`].
    pub fn decode(input: &mut Reader<'_>) -> Result<StatePartition> {
        let table = StateTable::decode(input)?;
        let mut timeouts = VecDeque::new();
        for _ in 0..input.u64()? {
            let time = input.u64()?;
            let key = input.bytes()?;
            let Some(slot) = table.find(key) else {
                anyhow::bail!("a timeout names a key not in state");
            };
            timeouts.push_back((time, slot));
        }
        Ok(StatePartition { table, timeouts })
    }

    /// Keys in state.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True without keys in state.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Sets a key's initial state (loaded before the first batch) at `time`.
    pub fn preset(&mut self, key: &[u8], state: &[u8], time: u64) {
        let slot = match self.table.find(key) {
            Some(slot) => {
                self.table.set(slot, state);
                self.table.set_meta(slot, time);
                slot
            }
            None => self.table.insert(key, state, time),
        };
        self.timeouts.push_back((time, slot));
    }

    /// Rewrites every key's state with `convert` (a migration operator's `update`), called with
    /// up to `chunk` keys at a time, no values and their old states: a key kept gets the state
    /// returned, a key dropped is removed. Returns (kept, dropped).
    pub fn migrate(
        &mut self,
        batch_time: u64,
        chunk: usize,
        mut convert: impl FnMut(StateInput) -> Result<StateOutput>,
    ) -> Result<(usize, usize)> {
        let slots: Vec<u32> = self.table.slots().collect();
        let (mut kept, mut dropped) = (0, 0);
        for part in slots.chunks(chunk.max(1)) {
            let n = part.len();
            let input = StateInput {
                batch_time: batch_time as i64,
                keys: Column::from_values(part.iter().map(|&s| self.table.key(s))),
                value_starts: vec![0; n + 1],
                values: Column::default(),
                states: Column::from_values(part.iter().map(|&s| self.table.value(s))),
                has_state: vec![true; n],
                timing_out: vec![false; n],
            };
            let output = convert(input)?;
            for (i, &slot) in part.iter().enumerate() {
                if output.keep[i] {
                    self.table.set(slot, output.states.get(i));
                    kept += 1;
                } else {
                    self.table.remove(slot);
                    dropped += 1;
                }
            }
        }
        Ok((kept, dropped))
    }

    /// Runs one batch. Changes nothing if it fails.
    pub fn step(
        &mut self,
        worker: &mut Worker,
        operator: usize,
        mode: StateMode,
        snapshots: bool,
        time: u64,
        buckets: &[Batch],
    ) -> Result<StateStep> {
        if !matches!(
            mode,
            StateMode::MapWithState {
                timeout_ms: Some(_)
            }
        ) {
            // Only timeouts read the queue (initial states are queued before the mode is known).
            self.timeouts.clear();
        }
        let (mut keys, mut value_starts, values) = group_values(buckets)?;
        let with_data = keys.len();
        let mut states = Column::with_capacity(with_data, 0);
        let mut has_state = Vec::with_capacity(with_data);
        let mut slots: Vec<Option<u32>> = Vec::with_capacity(with_data);
        for key in keys.iter() {
            let slot = self.table.find(key);
            states.push(slot.map_or(&[][..], |s| self.table.value(s)));
            has_state.push(slot.is_some());
            slots.push(slot);
        }
        let mut timing_out = vec![false; with_data];
        // Keys without new data that are visited too.
        let mut extra: Vec<u32> = Vec::new();
        let mut timeouts_seen = 0;
        let mut visited: HashSet<u32> = slots.iter().flatten().copied().collect();
        match mode {
            StateMode::UpdateAll => {
                extra.extend(self.table.slots().filter(|s| !visited.contains(s)));
            }
            StateMode::MapWithState {
                timeout_ms: Some(timeout),
            } => {
                // A key last updated at u times out in the first batch t with t - u > timeout.
                for &(updated, slot) in &self.timeouts {
                    if time.saturating_sub(updated) <= timeout {
                        break;
                    }
                    timeouts_seen += 1;
                    let current = self.table.is_alive(slot) && self.table.meta(slot) == updated;
                    if current && visited.insert(slot) {
                        extra.push(slot);
                    }
                }
            }
            StateMode::MapWithState { timeout_ms: None } => {}
        }
        let extra_times_out = matches!(mode, StateMode::MapWithState { .. });
        for &slot in &extra {
            keys.push(self.table.key(slot));
            states.push(self.table.value(slot));
            has_state.push(true);
            timing_out.push(extra_times_out);
            value_starts.push(*value_starts.last().unwrap_or(&0));
            slots.push(Some(slot));
        }
        if keys.is_empty() {
            return Ok(StateStep {
                output: Batch::default(),
                snapshot: snapshots.then(|| self.table.contents()),
            });
        }
        let result = worker.state(operator)?.update(spate_guest::StateInput {
            batch_time: time as i64,
            keys: keys.clone(),
            value_starts,
            values,
            states,
            has_state,
            timing_out: timing_out.clone(),
        })?;
        // Nothing can fail from here on.
        self.timeouts.drain(..timeouts_seen);
        for i in 0..keys.len() {
            let had_data = i < with_data;
            match slots[i] {
                Some(slot) if timing_out[i] || !result.keep[i] => self.table.remove(slot),
                Some(slot) => {
                    self.table.set(slot, result.states.get(i));
                    if had_data {
                        self.table.set_meta(slot, time);
                    }
                }
                None if result.keep[i] => {
                    slots[i] = Some(self.table.insert(keys.get(i), result.states.get(i), time));
                }
                None => {}
            }
            let timed = matches!(
                mode,
                StateMode::MapWithState {
                    timeout_ms: Some(_)
                }
            );
            if let (true, true, Some(slot)) = (timed, had_data, slots[i])
                && self.table.is_alive(slot)
            {
                self.timeouts.push_back((time, slot));
            }
        }
        if let Some(renumbered) = self.table.rebuild_if_sparse() {
            self.timeouts = self
                .timeouts
                .drain(..)
                .filter_map(|(t, slot)| {
                    let new = renumbered[slot as usize];
                    (new != u32::MAX).then_some((t, new))
                })
                .collect();
        }
        let output = match mode {
            StateMode::UpdateAll => self.table.contents(),
            StateMode::MapWithState { .. } => result.emitted,
        };
        Ok(StateStep {
            output,
            snapshot: snapshots.then(|| self.table.contents()),
        })
    }
}
