//! Key hashing and the index of distinct keys that combining builds, shared by the guest's
//! pre-combine and the host's combine-by-key so that both hash and compare keys one way.
//!
//! Most keys are short (words, ids). An index bucket keeps the first 8 bytes of its key, its
//! length and its slot, so finding a key of up to 8 bytes compares them in the bucket and never
//! reads the key column: one cache line per lookup instead of three (bucket, offsets, data).
//! An index can also keep an accumulator per key in its buckets (the guest's pre-combine does),
//! so that combining a repeated key touches that one cache line too.

use crate::Column;
use crate::column::bytes_eq;
use std::hash::Hasher;

/// A key's length and up to 16 of its bytes, read with fixed-size loads. For keys of at most
/// 16 bytes it determines the key: equal heads mean equal keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct KeyHead {
    lo: u64,
    hi: u64,
    len: u32,
}

/// The longest key a [`KeyHead`] holds whole.
const WHOLE: usize = 16;

impl KeyHead {
    #[inline(always)]
    fn of(key: &[u8]) -> KeyHead {
        let len = key.len();
        let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                key[at..at + 4].try_into().expect("4 bytes"),
            ))
        };
        // Overlapping loads cover every byte of keys up to 16 bytes; with the length they
        // determine the key.
        let (lo, hi) = if len >= WHOLE {
            (word(0), word(8))
        } else if len >= 8 {
            (word(0), word(len - 8))
        } else if len >= 4 {
            (half(0) | half(len - 4) << 32, 0)
        } else if len > 0 {
            let byte = |at: usize| u64::from(key[at]);
            (byte(0) | byte(len / 2) << 8 | byte(len - 1) << 16, 0)
        } else {
            (0, 0)
        };
        KeyHead {
            lo,
            hi,
            len: len as u32,
        }
    }

    /// Two multiply-rotate rounds over the head, the tail of longer keys, and a final
    /// avalanche, so that the high bits (partitioning) and the low bits (table buckets) both
    /// depend on every byte. Cheap on wasm32, which has no 64x64->128 multiply.
    #[inline(always)]
    fn hash(&self, key: &[u8]) -> u64 {
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
        const K3: u64 = 0xff51_afd7_ed55_8ccd;
        let mut h = (self.lo ^ K2).wrapping_mul(K1);
        h = (h.rotate_left(23) ^ self.hi).wrapping_mul(K2) ^ u64::from(self.len);
        if key.len() > WHOLE {
            let mut tail = rustc_hash::FxHasher::default();
            tail.write(&key[WHOLE..]);
            h = (h.rotate_left(23) ^ tail.finish()).wrapping_mul(K1);
        }
        h = (h ^ (h >> 32)).wrapping_mul(K3);
        h ^ (h >> 29)
    }
}

/// A key's head and hash, computed once so that a caller can [`KeyIndex::prefetch`] its bucket
/// some keys before [`KeyIndex::find_or_insert_hashed`] needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashedKey {
    head: KeyHead,
    hash: u64,
}

impl HashedKey {
    /// The head and hash of `key`.
    #[inline(always)]
    pub fn of(key: &[u8]) -> HashedKey {
        let head = KeyHead::of(key);
        HashedKey {
            head,
            hash: head.hash(key),
        }
    }

    /// The key's hash ([`key_hash`]).
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// The hash of a key, from its length and bytes. Every shuffle, combine and (keyed)
/// partitioner uses this one function, so equal keys meet in the same partition.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    KeyHead::of(key).hash(key)
}

/// One bucket of the index (16 bytes and the accumulator): its key's length and first word,
/// which decide equality for keys of up to 8 bytes and filter longer ones, the key's slot
/// (`EMPTY` when free), and the key's accumulator (`()` for an index without).
#[derive(Clone, Copy, Debug)]
struct Bucket<A> {
    lo: u64,
    len: u32,
    slot: u32,
    acc: A,
}

const EMPTY: u32 = u32::MAX;

impl<A: Default> Bucket<A> {
    fn free() -> Self {
        Bucket {
            lo: 0,
            len: 0,
            slot: EMPTY,
            acc: A::default(),
        }
    }
}

/// Keys up to this length are equal when their buckets' `lo` and `len` are.
const IN_BUCKET: usize = 8;

/// Where [`KeyIndex::find_or_insert`] put a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The key was already in the column, at this index.
    Found(u32),
    /// The key is new and was appended to the column at this index.
    Added(u32),
}

/// The distinct keys of a [`Column`] (each key once, at its slot) with their hashes.
///
/// An open-addressing table with linear probing, at most 5/8 full (7/8 with accumulators),
/// written here rather than taken from hashbrown: hashbrown calls the key comparison through a
/// `dyn FnMut`, which inside Wasm is an indirect call per probe and was a tenth of the word
/// count's time.
///
/// The column may also hold entries the index never matches (see [`KeyIndex::push_unindexed`]),
/// so that slots can be record indices of a batch in which only some records are combined.
///
/// `A` is an accumulator kept per key in its bucket ([`KeyIndex::combine_hashed`]); the
/// default `()` takes no room.
#[derive(Debug)]
pub struct KeyIndex<A = ()> {
    buckets: Vec<Bucket<A>>,
    /// Indexed keys.
    len: usize,
    hashes: Vec<u64>,
}

impl<A> Default for KeyIndex<A> {
    fn default() -> Self {
        KeyIndex {
            buckets: Vec::new(),
            len: 0,
            hashes: Vec::new(),
        }
    }
}

impl KeyIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<A: Copy + Default> KeyIndex<A> {
    /// How full the index may get, in eighths. Buckets with an accumulator are half as large
    /// again (24 bytes), so their index may be fuller: the word count's 50 k keys then take
    /// 1.5 MiB of buckets instead of 3 MiB, which saves 1.5 MiB per guest (per worker) and
    /// fits a 2 MiB L2. Measured: with 12 MiB batches, 2 workers' peak RSS 65-66 -> 60-61 MB.
    const MAX_EIGHTHS_FULL: usize = if std::mem::size_of::<A>() == 0 { 5 } else { 7 };

    /// Forgets every key, keeping the allocations.
    pub fn clear(&mut self) {
        // With no key indexed every bucket is already free: an index cleared twice in a row
        // (take_hashes, then the next user's clear) writes its buckets once.
        if self.len > 0 {
            self.buckets.fill(Bucket::free());
        }
        self.len = 0;
        self.hashes.clear();
    }

    /// The slot of `key` in `keys`, appending it there when it is new.
    #[inline]
    pub fn find_or_insert(&mut self, keys: &mut Column, key: &[u8]) -> Slot {
        self.find_or_insert_hashed(keys, key, HashedKey::of(key))
    }

    /// Starts loading the bucket where a lookup of `key` begins, without waiting for it, so
    /// that a lookup a few keys later finds it in cache: lookups in an index of tens of
    /// thousands of keys miss the cache, and prefetched ones overlap instead of waiting in
    /// turn. A hint only: x86_64's prefetch instruction, nothing elsewhere (on wasm32, where
    /// there is none, a plain load in its place measured no gain).
    #[inline(always)]
    pub fn prefetch(&self, key: &HashedKey) {
        #[cfg(target_arch = "x86_64")]
        if let Some(bucket) = self
            .buckets
            .get(key.hash as usize & self.buckets.len().wrapping_sub(1))
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: SSE, which the intrinsic needs, is part of x86_64's baseline; a prefetch
            // never faults, and the address is that of a live bucket anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((bucket as *const Bucket<A>).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// [`KeyIndex::find_or_insert`] with the key's head and hash already computed: `hashed`
    /// must be `HashedKey::of(key)`.
    #[inline(always)]
    pub fn find_or_insert_hashed(
        &mut self,
        keys: &mut Column,
        key: &[u8],
        hashed: HashedKey,
    ) -> Slot {
        let (bucket, found) = self.entry(keys, key, hashed);
        let slot = self.buckets[bucket].slot;
        if found {
            Slot::Found(slot)
        } else {
            Slot::Added(slot)
        }
    }

    /// Combines `value` into the accumulator of `key` with `combine` (`hashed` must be
    /// `HashedKey::of(key)`). A key not indexed yet is appended to `keys` and indexed with
    /// `value` as its accumulator: then its slot is returned.
    #[inline(always)]
    pub fn combine_hashed(
        &mut self,
        keys: &mut Column,
        key: &[u8],
        hashed: HashedKey,
        value: A,
        combine: impl FnOnce(&mut A, A),
    ) -> Option<u32> {
        let (bucket, found) = self.entry(keys, key, hashed);
        let bucket = &mut self.buckets[bucket];
        if found {
            combine(&mut bucket.acc, value);
            None
        } else {
            bucket.acc = value;
            Some(bucket.slot)
        }
    }

    /// Each indexed key's slot and accumulator, in no particular order.
    pub fn accumulators(&self) -> impl Iterator<Item = (u32, A)> + '_ {
        self.buckets
            .iter()
            .filter(|bucket| bucket.slot != EMPTY)
            .map(|bucket| (bucket.slot, bucket.acc))
    }

    /// The bucket of `key`, and whether the key was indexed before: when it was not, it is
    /// now, appended to `keys` with a default accumulator.
    #[inline(always)]
    fn entry(&mut self, keys: &mut Column, key: &[u8], hashed: HashedKey) -> (usize, bool) {
        if (self.len + 1) * 8 > self.buckets.len() * Self::MAX_EIGHTHS_FULL {
            self.grow();
        }
        match self.probe(keys, key, &hashed) {
            Ok(bucket) => (bucket, true),
            Err(free) => {
                let slot = keys.len() as u32;
                self.buckets[free] = Bucket {
                    lo: hashed.head.lo,
                    len: hashed.head.len,
                    slot,
                    acc: A::default(),
                };
                self.len += 1;
                keys.push(key);
                self.hashes.push(hashed.hash);
                (free, false)
            }
        }
    }

    /// The bucket holding `key`, or (as the error) the free bucket where its probe ended. The
    /// index must have buckets.
    #[inline(always)]
    fn probe(&self, keys: &Column, key: &[u8], hashed: &HashedKey) -> Result<usize, usize> {
        let HashedKey { head, hash } = *hashed;
        let mask = self.buckets.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let bucket = &self.buckets[i];
            if bucket.slot == EMPTY {
                return Err(i);
            }
            if bucket.lo == head.lo
                && bucket.len == head.len
                && (key.len() <= IN_BUCKET || bytes_eq(keys.get(bucket.slot as usize), key))
            {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot of `key` in `keys`, if it is indexed.
    #[inline]
    pub fn find(&self, keys: &Column, key: &[u8]) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        self.probe(keys, key, &HashedKey::of(key))
            .ok()
            .map(|bucket| self.buckets[bucket].slot)
    }

    /// How many keys fit before the index grows.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * Self::MAX_EIGHTHS_FULL / 8
    }

    /// The number of keys indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Doubles the buckets (16 at first) and re-places every indexed key.
    #[cold]
    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![Bucket::free(); size]);
        let mask = size - 1;
        for bucket in old.into_iter().filter(|b| b.slot != EMPTY) {
            let mut i = self.hashes[bucket.slot as usize] as usize & mask;
            while self.buckets[i].slot != EMPTY {
                i = (i + 1) & mask;
            }
            self.buckets[i] = bucket;
        }
    }

    /// Accounts for a slot that the caller fills in its column without indexing it: no lookup
    /// ever finds it.
    #[inline]
    pub fn push_unindexed(&mut self) {
        self.hashes.push(0);
    }

    /// The hash of each slot's key, by slot (0 for unindexed slots).
    pub fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// Takes the hashes out, leaving the index empty.
    pub fn take_hashes(&mut self) -> Vec<u64> {
        let hashes = std::mem::take(&mut self.hashes);
        self.clear();
        hashes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_sees_inserted_keys_only() {
        let mut index = KeyIndex::new();
        let mut keys = Column::default();
        assert_eq!(index.find(&keys, b"a"), None);
        for k in [&b"a"[..], b"a-much-longer-key-than-sixteen", b"b"] {
            index.find_or_insert(&mut keys, k);
        }
        assert_eq!(
            index.find(&keys, b"a-much-longer-key-than-sixteen"),
            Some(1)
        );
        assert_eq!(index.find(&keys, b"c"), None);
        assert_eq!(index.len(), 3);
    }

    fn keys() -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = (0..40).map(|n| vec![b'a'; n]).collect();
        for n in 0..40 {
            let mut k = vec![b'a'; n];
            k.push(b'b');
            keys.push(k.clone());
            k.insert(0, b'c');
            keys.push(k);
        }
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn every_distinct_key_gets_one_slot() {
        let mut index = KeyIndex::new();
        let mut column = Column::default();
        let keys = keys();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                index.find_or_insert(&mut column, key),
                Slot::Added(i as u32)
            );
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                index.find_or_insert(&mut column, key),
                Slot::Found(i as u32)
            );
            assert_eq!(column.get(i), &key[..]);
            assert_eq!(index.hashes()[i], key_hash(key));
        }
    }

    #[test]
    fn a_cleared_index_starts_over() {
        let mut index = KeyIndex::new();
        let mut column = Column::default();
        for n in 0..1000u32 {
            index.find_or_insert(&mut column, &n.to_le_bytes());
        }
        index.clear();
        let mut column = Column::default();
        assert_eq!(index.find_or_insert(&mut column, b"x"), Slot::Added(0));
        assert_eq!(
            index.find_or_insert(&mut column, &7u32.to_le_bytes()),
            Slot::Added(1)
        );
        assert_eq!(index.find_or_insert(&mut column, b"x"), Slot::Found(0));
    }

    #[test]
    fn accumulators_combine_per_key_and_survive_growth() {
        let mut index = KeyIndex::<u64>::default();
        let mut column = Column::default();
        // Three rounds over 1000 keys: the first adds each key (growing the index several
        // times with accumulators in it), the others combine into them.
        for round in 0..3 {
            for n in 0..1000u32 {
                let key = n.to_le_bytes();
                let added = index.combine_hashed(
                    &mut column,
                    &key,
                    HashedKey::of(&key),
                    u64::from(n) + 1,
                    |acc, value| *acc += value,
                );
                assert_eq!(added, (round == 0).then_some(n), "key {n}, round {round}");
            }
        }
        let mut accumulators: Vec<(u32, u64)> = index.accumulators().collect();
        accumulators.sort_unstable();
        let expected: Vec<(u32, u64)> = (0..1000).map(|n| (n, 3 * (u64::from(n) + 1))).collect();
        assert_eq!(accumulators, expected);
        assert_eq!(index.find(&column, &7u32.to_le_bytes()), Some(7));
        index.clear();
        assert_eq!(index.accumulators().count(), 0);
    }

    #[test]
    fn unindexed_slots_are_never_found() {
        let mut index = KeyIndex::new();
        let mut column = Column::default();
        column.push(b"k");
        index.push_unindexed();
        assert_eq!(index.find_or_insert(&mut column, b"k"), Slot::Added(1));
    }

    #[test]
    fn hashed_lookups_agree_with_plain_ones() {
        let mut index = KeyIndex::new();
        let mut column = Column::default();
        for key in keys() {
            let hashed = HashedKey::of(&key);
            assert_eq!(hashed.hash(), key_hash(&key));
            index.prefetch(&hashed);
            let Slot::Added(slot) = index.find_or_insert_hashed(&mut column, &key, hashed) else {
                panic!("{key:?} is new");
            };
            assert_eq!(index.find_or_insert(&mut column, &key), Slot::Found(slot));
        }
    }

    #[test]
    fn heads_of_different_keys_differ_up_to_sixteen_bytes() {
        let keys = keys();
        for a in &keys {
            for b in &keys {
                if a.len() <= WHOLE && b.len() <= WHOLE {
                    assert_eq!(KeyHead::of(a) == KeyHead::of(b), a == b, "{a:?} {b:?}");
                }
            }
        }
    }
}
