//! Block buffering between receivers and batches, with backpressure.
//!
//! Receivers append lines to the current block; a block is sealed every block interval (by the
//! batch clock) or when it reaches `max-block-bytes`; at a batch time the sealed blocks become
//! the batch's input partitions. Bytes count as buffered from the moment they are appended until
//! their batch is processed; above `max-buffered-bytes` receivers wait, so a fast producer is
//! slowed down by TCP flow control instead of filling memory.

use crate::position::{self, Progress};
use spate_guest::{Column, Partition};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A sealed block of one source's records: one input partition.
#[derive(Debug, Default)]
pub struct Block {
    /// Index of the source (in the plan's sources) it came from.
    pub source: usize,
    /// The records: lines as values (text sources), or keys, values and event times (Kafka).
    pub records: Partition,
    /// Where the source stood after these records (for the batch log and recovery).
    pub progress: Vec<Progress>,
}

impl Block {
    /// Bytes of data held (values and keys).
    pub fn bytes(&self) -> usize {
        partition_bytes(&self.records)
    }
}

/// Bytes of data in `records` (values and keys): what backpressure counts.
pub fn partition_bytes(records: &Partition) -> usize {
    records.values.data.len() + records.keys.as_ref().map_or(0, |k| k.data.len())
}

/// A batch's input as the job runner gets it.
#[derive(Debug)]
pub struct BatchInput {
    /// Batch time in ms since the Unix epoch (the end of its interval, as Spark labels batches).
    pub time_ms: u64,
    /// Sealed blocks: the input partitions of every source.
    pub blocks: Vec<Block>,
    /// When the batch was formed (for scheduling delay).
    pub submitted: std::time::Instant,
    /// True for the last batch of bounded input (every source ended, nothing left): event-time
    /// windows still open are closed, as a final watermark closes them in Flink.
    pub end_of_input: bool,
    /// Where the sources stood after this batch's lines: (source index, progress).
    pub progress: Vec<(usize, Progress)>,
}

impl BatchInput {
    /// A batch of `blocks` at `time_ms`: their progress is gathered and blocks that only
    /// carried progress (no lines) are dropped.
    pub fn new(time_ms: u64, blocks: Vec<Block>, end_of_input: bool) -> Self {
        let mut progress = Vec::new();
        let mut kept = Vec::with_capacity(blocks.len());
        for mut block in blocks {
            progress.extend(block.progress.drain(..).map(|p| (block.source, p)));
            if !block.records.is_empty() {
                kept.push(block);
            }
        }
        BatchInput {
            time_ms,
            blocks: kept,
            submitted: std::time::Instant::now(),
            end_of_input,
            progress,
        }
    }

    /// Bytes of input held.
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(Block::bytes).sum()
    }

    /// Records of input held.
    pub fn records(&self) -> usize {
        self.blocks.iter().map(|b| b.records.len()).sum()
    }
}

/// A block being filled.
#[derive(Default)]
struct Filling {
    records: Partition,
    progress: Vec<Progress>,
}

#[derive(Default)]
struct State {
    /// The blocks being filled and the progress after their records, per source and lane (a
    /// source's sub-stream whose records never share a block with another's, each with its
    /// own position: a Kafka partition; text sources have one lane).
    current: BTreeMap<(usize, u32), Filling>,
    sealed: VecDeque<Block>,
    buffered: usize,
    /// Receivers waiting for room: nothing more comes until blocks are taken.
    waiting_for_room: usize,
    open_sources: usize,
    stopping: bool,
    failure: Option<String>,
    skipped_lines: u64,
    /// The runner waits for its next batch (available-now forms batches on demand).
    batch_wanted: bool,
    /// Per source that paces the batches (see [`BlockBuffer::pace`]), by its index: every
    /// batch up to this time has all its records pushed. Empty: batches are cut by the clock
    /// alone.
    complete: BTreeMap<usize, u64>,
    /// Per pacing source that has handed its first batch of this run over: that batch's time,
    /// and whether the source had handed batches over in an earlier run.
    first_handovers: BTreeMap<usize, (u64, bool)>,
    /// The time of the last batch formed.
    formed: u64,
}

/// The shared buffer between receivers and the batch clock.
pub struct BlockBuffer {
    state: Mutex<State>,
    changed: Condvar,
    max_block_bytes: usize,
    max_buffered_bytes: usize,
}

impl State {
    /// With pacing sources, the time every batch up to which all of them have pushed.
    fn complete_through(&self) -> Option<u64> {
        self.complete.values().min().copied()
    }

    /// Every pacing source has handed its first batch over in this run, so the clock knows
    /// where its batches start ([`BlockBuffer::first_handover`]).
    fn started(&self) -> bool {
        !self.complete.is_empty() && self.first_handovers.len() >= self.complete.len()
    }
}

impl BlockBuffer {
    /// A buffer cutting blocks at `max_block_bytes` and pausing receivers above `max_buffered_bytes`.
    pub fn new(max_block_bytes: usize, max_buffered_bytes: usize) -> Self {
        BlockBuffer {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_block_bytes,
            max_buffered_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the batches wait for the sources `pacing` (by index) that know which batch each
    /// of their records belongs to (a scale-out repartition topic's readers): batch T is
    /// formed only once each of them has pushed all of T's records
    /// ([`BlockBuffer::complete_through`]). Batches up to `formed` are done (a recovered
    /// job's).
    pub fn pace(&self, formed: u64, pacing: &[usize]) {
        let mut state = self.lock();
        state.complete = pacing.iter().map(|&source| (source, formed)).collect();
        state.formed = formed;
    }

    /// Pacing source `source` hands its first batch of this run over, batch `time`. Once every
    /// pacing source has: if one has handed batches over before (`resumed`), the job goes on
    /// from where it recovered, and the batch times between are formed empty, as a recovered
    /// job's down time is. If none has (a reduce task starting fresh while its writers are
    /// ahead of it), the first batch moves back to the earliest of their first batches, so that
    /// the writers' earlier batches are batches of their own, not folded into one; never
    /// before the time [`BlockBuffer::pace`] was given, which for a fresh job is the first
    /// batch its outputs have not recorded as written.
    pub fn first_handover(&self, source: usize, time: u64, batch_ms: u64, resumed: bool) {
        let mut state = self.lock();
        if state.started() {
            return;
        }
        state
            .first_handovers
            .entry(source)
            .or_insert((time, resumed));
        if !state.started() {
            return;
        }
        let resumed = state.first_handovers.values().any(|&(_, resumed)| resumed);
        let first = state.first_handovers.values().map(|&(time, _)| time).min();
        if let (false, Some(first)) = (resumed, first) {
            let formed = state.formed.max(first.saturating_sub(batch_ms));
            state.formed = formed;
            for through in state.complete.values_mut() {
                *through = (*through).max(formed);
            }
        }
        self.changed.notify_all();
    }

    /// For the clock of a paced job: waits until the pacing source has handed its first batch
    /// over, and gives the time of the batch before the clock's first; `None` when the sources
    /// ended, or the job halts, before that. Without a pacing source, at once: `formed`
    /// (a fixed first batch).
    pub fn wait_for_first_handover(
        &self,
        formed: u64,
        halt: &std::sync::atomic::AtomicBool,
    ) -> Option<u64> {
        self.poll_until(Duration::from_millis(20), |state| {
            if state.complete.is_empty() {
                Some(Some(formed))
            } else if state.started() {
                Some(Some(state.formed))
            } else if state.stopping
                || state.open_sources == 0
                || halt.load(std::sync::atomic::Ordering::SeqCst)
            {
                Some(None)
            } else {
                None
            }
        })
    }

    /// Pacing source `source` has pushed every record of every batch up to `time`.
    pub fn complete_through(&self, source: usize, time: u64) {
        let mut state = self.lock();
        if let Some(through) = state.complete.get_mut(&source) {
            *through = (*through).max(time);
        }
        self.changed.notify_all();
    }

    /// For a pacing source: waits until every batch before `time` is formed, so that records
    /// of batch `time` pushed now go into it; false when the job stops first.
    pub fn wait_for_batches_before(&self, time: u64, batch_ms: u64) -> bool {
        self.poll_until(Duration::from_millis(50), |state| {
            if state.stopping {
                Some(false)
            } else {
                (state.formed + batch_ms >= time).then_some(true)
            }
        })
    }

    /// For the clock: waits until batch `time` may be formed (at once without a pacing
    /// source); false when the sources ended, or the job halts, before it may.
    pub fn wait_until_formable(&self, time: u64, halt: &std::sync::atomic::AtomicBool) -> bool {
        self.poll_until(Duration::from_millis(20), |state| {
            match state.complete_through() {
                None => Some(true),
                Some(through) if through >= time => Some(true),
                Some(_) if state.open_sources == 0 => Some(false),
                Some(_) if halt.load(std::sync::atomic::Ordering::SeqCst) => Some(false),
                Some(_) => None,
            }
        })
    }

    /// Waits until `check` gives an answer, looking again at every change of the state and at
    /// least every `every` (a halt flag outside the state does not wake the condition).
    fn poll_until<T>(&self, every: Duration, mut check: impl FnMut(&State) -> Option<T>) -> T {
        let mut state = self.lock();
        loop {
            if let Some(answer) = check(&state) {
                return answer;
            }
            state = self
                .changed
                .wait_timeout(state, every)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The clock formed batch `time`.
    pub fn formed(&self, time: u64) {
        self.lock().formed = time;
        self.changed.notify_all();
    }

    /// Counts a source as open; call before starting its receiver.
    pub fn open_source(&self) {
        self.lock().open_sources += 1;
    }

    /// A receiver has no more data (end of input, or stopped).
    pub fn close_source(&self) {
        let mut state = self.lock();
        state.open_sources = state.open_sources.saturating_sub(1);
        self.changed.notify_all();
    }

    /// A receiver failed: record the error and stop receiving everywhere. Data already received
    /// is still processed before the job ends with this error.
    pub fn fail(&self, error: String) {
        let mut state = self.lock();
        state.failure.get_or_insert(error);
        state.stopping = true;
        self.changed.notify_all();
    }

    /// Counts lines a receiver skipped under `on-bad-line = "skip"`.
    pub fn count_skipped(&self, lines: u64) {
        self.lock().skipped_lines += lines;
    }

    /// Takes the skipped-line count accumulated since the last call.
    pub fn take_skipped(&self) -> u64 {
        std::mem::take(&mut self.lock().skipped_lines)
    }

    /// Asks receivers to stop.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// True once a stop was asked for or a receiver failed.
    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Waits until a stop is asked for (the job's last batch is done, or it failed).
    pub fn wait_until_stopping(&self) {
        let mut state = self.lock();
        while !state.stopping {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The first receiver failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// True when every source has closed.
    pub fn sources_done(&self) -> bool {
        self.lock().open_sources == 0
    }

    /// A column for a receiver to fill with lines: room for a block and the last read
    /// (`read_len` bytes) that completes it, so that [`BlockBuffer::push`] can take it whole.
    /// The slack covers the end of a line carried over from the read before, and the line
    /// copy's 16-byte stores past the last line, so that the column does not grow by doubling.
    pub fn block_column(&self, read_len: usize) -> Column {
        const SLACK: usize = 4 << 10;
        let bytes = self.max_block_bytes + read_len + SLACK;
        Column::with_capacity(bytes / 32, bytes)
    }

    /// True when `lines` hold a block's worth: a receiver reading without pause hands them
    /// over then, rather than after every read.
    pub fn is_block(&self, lines: &Column) -> bool {
        lines.data.len() >= self.max_block_bytes
    }

    /// Moves `lines` (leaving it empty, with the same room) into the buffer (waiting while the
    /// buffer is full), with the source's position after them. Returns false when the job is
    /// stopping and the receiver should end; the lines are then still appended, never dropped.
    pub fn push(&self, source: usize, lines: &mut Column, progress: Option<Progress>) -> bool {
        let added = lines.data.len();
        let mut state = self.wait_for_room((source, 0), added, progress);
        if lines.is_empty() {
            return !state.stopping;
        }
        let current = &mut state.current.entry((source, 0)).or_default().records.values;
        if current.is_empty() && lines.data.capacity() >= self.max_block_bytes {
            // A column from `block_column`: taken as it is, the receiver's next lines go into
            // a new one of the same size. The receiver's copy into it was the only one.
            let room = Column::with_capacity(lines.offsets.capacity(), lines.data.capacity());
            *current = std::mem::replace(lines, room);
        } else {
            if current.data.capacity() == 0 {
                // Sized once for a whole block, so that a block does not grow by doubling and
                // hold up to twice its bytes (buffered memory is what backpressure bounds).
                *current = self.block_column(added);
            }
            current.extend_from(lines);
            lines.data.clear();
            lines.offsets.clear();
        }
        self.appended(state, (source, 0), added)
    }

    /// [`BlockBuffer::push`] for records with keys or event times, into lane `lane` of the
    /// source (a Kafka partition: its records never share a block with another lane's);
    /// `records` is left empty. Every push of a source has the same columns (keys or none,
    /// event times or none).
    pub fn push_records(
        &self,
        source: usize,
        lane: u32,
        records: &mut Partition,
        progress: Option<Progress>,
    ) -> bool {
        let added = partition_bytes(records);
        let mut state = self.wait_for_room((source, lane), added, progress);
        if records.is_empty() {
            return !state.stopping;
        }
        let current = &mut state.current.entry((source, lane)).or_default().records;
        if current.is_empty() {
            *current = std::mem::take(records);
        } else {
            current.values.extend_from(&records.values);
            if let (Some(keys), Some(more)) = (&mut current.keys, &records.keys) {
                keys.extend_from(more);
            }
            current.timestamps.append(&mut records.timestamps);
            *records = Partition::default();
        }
        self.appended(state, (source, lane), added)
    }

    /// Waits while adding `added` bytes would pass `max-buffered-bytes`, then records the
    /// `progress` of `slot` (source, lane); returns the lock for the append.
    fn wait_for_room(
        &self,
        slot: (usize, u32),
        added: usize,
        progress: Option<Progress>,
    ) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        let full = |state: &State| {
            !state.stopping
                && state.buffered > 0
                && state.buffered + added > self.max_buffered_bytes
        };
        if full(&state) {
            state.waiting_for_room += 1;
            while full(&state) {
                // Let the clock take what is here even if the block is not due yet.
                seal(&mut state);
                self.changed.notify_all();
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            state.waiting_for_room -= 1;
        }
        if let Some(progress) = progress {
            let filling = state.current.entry(slot).or_default();
            position::record(&mut filling.progress, progress);
        }
        state
    }

    /// Counts `added` bytes appended to the block of `slot` (source, lane), sealing blocks when
    /// it is full; false when the job is stopping.
    fn appended(&self, mut state: MutexGuard<'_, State>, slot: (usize, u32), added: usize) -> bool {
        let full = state
            .current
            .get(&slot)
            .is_some_and(|block| partition_bytes(&block.records) >= self.max_block_bytes);
        state.buffered += added;
        if full {
            seal(&mut state);
            self.changed.notify_all();
        }
        !state.stopping
    }

    /// Seals the current block (the block interval elapsed).
    pub fn seal(&self) {
        seal(&mut self.lock());
        self.changed.notify_all();
    }

    /// Takes sealed blocks, oldest first, up to `max_bytes` (at least one block if any).
    pub fn take(&self, max_bytes: usize) -> Vec<Block> {
        self.take_in_multiples(max_bytes, 1)
    }

    /// Takes sealed blocks like [`BlockBuffer::take`], but a multiple of `multiple` of them
    /// when at least that many fit, so that a batch's partitions spread evenly over that many
    /// workers (with 2 workers, a batch of 3 partitions keeps one worker idle a third of it).
    pub fn take_in_multiples(&self, max_bytes: usize, multiple: usize) -> Vec<Block> {
        let mut state = self.lock();
        let (mut count, mut bytes) = (0, 0);
        for block in &state.sealed {
            if count > 0 && bytes + block.bytes() > max_bytes {
                break;
            }
            bytes += block.bytes();
            count += 1;
        }
        if count >= multiple.max(1) {
            count -= count % multiple.max(1);
        }
        if count > 0 {
            // A batch is being formed: the runner's demand, if any, is served.
            state.batch_wanted = false;
        }
        state.sealed.drain(..count).collect()
    }

    /// The runner is ready for its next batch: an available-now clock forms it now, from
    /// everything received by then.
    pub fn want_batch(&self) {
        self.lock().batch_wanted = true;
        self.changed.notify_all();
    }

    /// True when sealed blocks wait to be taken.
    pub fn has_sealed(&self) -> bool {
        !self.lock().sealed.is_empty()
    }

    /// Waits until a block is sealed, every source is done, or the timeout passes; returns true
    /// when a sealed block is waiting.
    pub fn wait_for_blocks(&self, timeout: Duration) -> bool {
        self.wait_for_sealed(1, timeout)
    }

    /// Waits until `count` blocks are sealed, or fewer but no more can come soon (every source
    /// is done, a receiver waits for room, or the buffer is too full for another block), or the
    /// timeout passes; returns true when sealed blocks are waiting and no more are worth
    /// waiting for. (A Kafka receiver hands a partition's records over in pieces larger than a
    /// block: one waiting for room with a single block sealed, while the clock waited for a
    /// second, stopped an available-now job for good.)
    pub fn wait_for_sealed(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(count, false, timeout)
    }

    /// [`BlockBuffer::wait_for_sealed`], and the runner wants a batch
    /// ([`BlockBuffer::want_batch`]): a batch formed only then holds everything received while
    /// the runner was busy, instead of the few blocks sealed just after the previous one.
    pub fn wait_for_demand(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(count, true, timeout)
    }

    fn wait_until(&self, count: usize, on_demand: bool, timeout: Duration) -> bool {
        let enough = |s: &State| {
            !s.sealed.is_empty()
                && (s.batch_wanted || !on_demand)
                && (s.sealed.len() >= count
                    || s.open_sources == 0
                    || s.waiting_for_room > 0
                    || s.buffered + self.max_block_bytes > self.max_buffered_bytes)
        };
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !enough(s) && s.open_sources > 0)
            .unwrap_or_else(|e| e.into_inner());
        enough(&state)
    }

    /// Returns processed bytes to the budget, waking paused receivers.
    pub fn release(&self, bytes: usize) {
        let mut state = self.lock();
        state.buffered = state.buffered.saturating_sub(bytes);
        self.changed.notify_all();
    }

    /// Bytes received and not yet processed.
    pub fn buffered_bytes(&self) -> usize {
        self.lock().buffered
    }
}

/// Seals every current block (one holding only progress too), each with its lane's progress.
fn seal(state: &mut State) {
    for ((source, _), filling) in std::mem::take(&mut state.current) {
        if !filling.records.is_empty() || !filling.progress.is_empty() {
            state.sealed.push_back(Block {
                source,
                records: filling.records,
                progress: filling.progress,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lines(n: usize, width: usize) -> Column {
        let line = vec![b'x'; width];
        Column::from_values((0..n).map(|_| &line[..]))
    }

    #[test]
    fn a_receivers_block_column_is_taken_whole() {
        let buffer = BlockBuffer::new(64, 1 << 20);
        let mut lines = buffer.block_column(16);
        let room = lines.data.capacity();
        for _ in 0..7 {
            lines.push(b"0123456789");
        }
        let data = lines.data.as_ptr();
        buffer.push(0, &mut lines, None);
        // The receiver gets an empty column of the same room; the block is its old one.
        assert!(lines.is_empty());
        assert_eq!(lines.data.capacity(), room);
        let blocks = buffer.take(1 << 20);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].records.values.data.as_ptr(), data);
        assert_eq!(blocks[0].records.len(), 7);
        assert_eq!(buffer.buffered_bytes(), 70);
    }

    #[test]
    fn blocks_are_cut_by_size_and_by_seal() {
        let buffer = BlockBuffer::new(100, 10_000);
        buffer.push(0, &mut lines(3, 40), None);
        assert_eq!(buffer.take(usize::MAX).len(), 1, "120 bytes >= 100 seals");
        buffer.push(0, &mut lines(1, 10), None);
        assert!(buffer.take(usize::MAX).is_empty());
        buffer.seal();
        assert_eq!(buffer.take(usize::MAX)[0].records.len(), 1);
    }

    #[test]
    fn take_respects_the_byte_budget() {
        let buffer = BlockBuffer::new(10, 10_000);
        for _ in 0..5 {
            buffer.push(0, &mut lines(1, 10), None);
        }
        assert_eq!(buffer.take(25).len(), 2);
        assert_eq!(buffer.take(0).len(), 1, "at least one block");
    }

    #[test]
    fn blocks_are_taken_in_multiples_when_enough_fit() {
        let buffer = BlockBuffer::new(10, 10_000);
        let full = BlockBuffer::new(10, 15);
        full.open_source();
        full.push(0, &mut lines(1, 10), None);
        assert!(
            full.wait_for_sealed(2, Duration::ZERO),
            "one block and no room for a second: take it"
        );
        for _ in 0..5 {
            buffer.push(0, &mut lines(1, 10), None);
        }
        buffer.open_source();
        assert!(buffer.wait_for_sealed(4, Duration::ZERO));
        assert!(!buffer.wait_for_sealed(6, Duration::ZERO));
        buffer.close_source();
        assert!(
            buffer.wait_for_sealed(6, Duration::ZERO),
            "no more will come"
        );
        assert_eq!(buffer.take_in_multiples(35, 2).len(), 2, "3 fit, 2 taken");
        assert_eq!(buffer.take_in_multiples(usize::MAX, 2).len(), 2, "3 left");
        assert_eq!(
            buffer.take_in_multiples(usize::MAX, 2).len(),
            1,
            "fewer than the multiple: all of them"
        );
    }

    #[test]
    fn batches_on_demand_wait_for_the_runner() {
        let buffer = Arc::new(BlockBuffer::new(10, 10_000));
        buffer.open_source();
        for _ in 0..3 {
            buffer.push(0, &mut lines(1, 10), None);
        }
        assert!(buffer.wait_for_sealed(2, Duration::ZERO));
        assert!(
            !buffer.wait_for_demand(2, Duration::ZERO),
            "blocks are there, but the runner is busy"
        );
        let waiting = {
            let buffer = buffer.clone();
            std::thread::spawn(move || buffer.wait_for_demand(2, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(50));
        buffer.want_batch();
        assert!(waiting.join().unwrap(), "the demand wakes the clock");
        assert_eq!(buffer.take_in_multiples(usize::MAX, 2).len(), 2);
        assert!(
            !buffer.wait_for_demand(1, Duration::ZERO),
            "the batch taken served the demand"
        );
        buffer.want_batch();
        assert!(
            !buffer.wait_for_demand(2, Duration::ZERO),
            "wanted, but a second block is coming"
        );
        buffer.close_source();
        assert!(
            buffer.wait_for_demand(2, Duration::ZERO),
            "wanted, and no more will come"
        );
    }

    #[test]
    fn a_receiver_waiting_for_room_lets_the_clock_take_a_single_block() {
        // Room for 60 bytes, blocks of 10: one sealed block of 40 leaves room for another
        // block, but the receiver's next piece (30 bytes, a Kafka partition's records handed
        // over at once) does not fit. The clock wanting two blocks must not wait for it.
        let buffer = Arc::new(BlockBuffer::new(10, 60));
        buffer.open_source();
        buffer.push(0, &mut lines(1, 40), None);
        assert!(!buffer.wait_for_sealed(2, Duration::ZERO), "room for more");
        let receiver = {
            let buffer = buffer.clone();
            std::thread::spawn(move || buffer.push(0, &mut lines(1, 30), None))
        };
        assert!(
            buffer.wait_for_sealed(2, Duration::from_secs(10)),
            "a receiver waits for room: nothing more comes, take the one block"
        );
        assert!(!receiver.is_finished());
        assert_eq!(buffer.take_in_multiples(usize::MAX, 2).len(), 1);
        buffer.release(40);
        assert!(receiver.join().unwrap());
        assert_eq!(buffer.buffered_bytes(), 30);
    }

    #[test]
    fn a_full_buffer_pauses_the_receiver_until_release() {
        let buffer = Arc::new(BlockBuffer::new(10, 40));
        buffer.push(0, &mut lines(1, 40), None);
        let receiver = {
            let buffer = buffer.clone();
            std::thread::spawn(move || buffer.push(0, &mut lines(1, 10), None))
        };
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            !receiver.is_finished(),
            "the receiver must wait while the buffer is full"
        );
        assert_eq!(buffer.buffered_bytes(), 40);
        buffer.release(40);
        assert!(receiver.join().unwrap());
        assert_eq!(buffer.buffered_bytes(), 10);
    }

    #[test]
    fn a_fresh_pacing_source_moves_the_first_batch_back_and_a_resumed_one_does_not() {
        use std::sync::atomic::AtomicBool;
        let halt = AtomicBool::new(false);
        // A fresh job: the clock may start anywhere from 10 000 on; the source's first batch
        // is 4 000, before the outputs' lower bound, so 10 000 it is.
        let fresh = BlockBuffer::new(10, 1000);
        fresh.open_source();
        fresh.pace(9_000, &[0]);
        fresh.first_handover(0, 4_000, 1_000, false);
        assert_eq!(fresh.wait_for_first_handover(0, &halt), Some(9_000));
        // No lower bound (1 000): the first batch is the source's, 4 000, and formable once
        // the source has pushed it.
        let fresh = BlockBuffer::new(10, 1000);
        fresh.open_source();
        fresh.pace(0, &[0]);
        fresh.first_handover(0, 4_000, 1_000, false);
        assert_eq!(fresh.wait_for_first_handover(0, &halt), Some(3_000));
        assert!(fresh.wait_for_batches_before(4_000, 1_000));
        fresh.complete_through(0, 4_000);
        assert!(fresh.wait_until_formable(4_000, &halt));
        // Only the first hand-over counts.
        fresh.first_handover(0, 8_000, 1_000, false);
        assert_eq!(fresh.wait_for_first_handover(0, &halt), Some(3_000));
        // A resumed source goes on from the recovered batch: 6 000 and 7 000 are formed empty.
        let resumed = BlockBuffer::new(10, 1000);
        resumed.open_source();
        resumed.pace(5_000, &[0]);
        resumed.first_handover(0, 8_000, 1_000, true);
        assert_eq!(resumed.wait_for_first_handover(0, &halt), Some(5_000));
        // Without a pacing source the clock's own first batch stands, at once.
        let unpaced = BlockBuffer::new(10, 1000);
        assert_eq!(unpaced.wait_for_first_handover(7_000, &halt), Some(7_000));
        // A source that ends before handing anything over ends the clock.
        let ended = BlockBuffer::new(10, 1000);
        ended.pace(0, &[0]);
        assert_eq!(ended.wait_for_first_handover(0, &halt), None);
    }

    #[test]
    fn two_pacing_sources_start_together_and_a_batch_waits_for_both() {
        use std::sync::atomic::AtomicBool;
        let halt = AtomicBool::new(false);
        let buffer = BlockBuffer::new(10, 1000);
        buffer.open_source();
        buffer.open_source();
        buffer.pace(0, &[0, 2]);
        // One source's first hand-over does not start the clock; the earlier of the two
        // first batches is where it starts.
        buffer.first_handover(2, 5_000, 1_000, false);
        buffer.first_handover(0, 4_000, 1_000, false);
        assert_eq!(buffer.wait_for_first_handover(0, &halt), Some(3_000));
        buffer.complete_through(0, 5_000);
        halt.store(true, std::sync::atomic::Ordering::SeqCst);
        // Source 2 has not pushed batch 4 000's records yet: not formable (the halt ends
        // the wait, with no).
        assert!(!buffer.wait_until_formable(4_000, &halt));
        halt.store(false, std::sync::atomic::Ordering::SeqCst);
        buffer.complete_through(2, 4_000);
        assert!(buffer.wait_until_formable(4_000, &halt));
        // A source unknown to the pacing changes nothing.
        buffer.complete_through(1, 9_000);
        halt.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(!buffer.wait_until_formable(5_000, &halt));
        // One resumed source keeps the recovered start.
        let resumed = BlockBuffer::new(10, 1000);
        resumed.open_source();
        resumed.open_source();
        resumed.pace(2_000, &[0, 1]);
        resumed.first_handover(0, 8_000, 1_000, false);
        resumed.first_handover(1, 8_000, 1_000, true);
        assert_eq!(resumed.wait_for_first_handover(0, &halt), Some(2_000));
    }
}
