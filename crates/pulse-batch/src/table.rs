//! The in-memory aggregation table: every key's [`AggState`], found by a packed integer.
//!
//! This is the hot path. User ids are interned to `u32`; a key packs the user, metric and
//! window number (the "series", 32 bits) with the window index (32 bits) into one `u64`,
//! hashed with a folded multiply. The hash table holds only the 4-byte slot of a key; keys
//! live densely by slot and states in fixed-size chunks, so growing never copies states
//! and peak memory stays close to what the states need (10 million readings in 5-minute
//! windows are two million keys). Output is produced in the row order of the contract:
//! user id, metric name and window label compared as strings, then window start.

use std::collections::HashMap;
use std::hash::Hasher;

use hashbrown::HashTable;
use std::sync::Arc;

use crate::catalog::Metric;
use crate::error::BatchError;
use crate::reading::Reading;
use crate::row::Row;
use crate::sketch;
use crate::state::AggState;
use crate::window::{DayCache, WindowSet};

/// At most this many distinct users in one table (24 bits of the key).
pub const MAX_USERS: usize = 1 << 24;
const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;

/// A hasher for `u64` keys: one folded 64×64→128 multiply, so that high and low halves of
/// the key both reach the low bits the table indexes with.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write_u64(&mut self, n: u64) {
        let m = u128::from(n ^ self.0) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[inline]
fn hash_key(key: u64) -> u64 {
    let mut h = KeyHasher::default();
    h.write_u64(key);
    h.finish()
}

/// Interned user ids.
#[derive(Default, Debug)]
struct Users {
    ids: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    names: Vec<Box<str>>,
}

impl Users {
    #[inline]
    fn intern(&mut self, name: &str) -> Result<u32, BatchError> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.names.len() >= MAX_USERS {
            return Err(BatchError::TooManyUsers(MAX_USERS));
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        Ok(id)
    }
}

/// Packs a key: user (24 bits), metric (4), window (4), window index (32).
#[inline]
fn pack(user: u32, metric: Metric, window: usize, index: u32) -> u64 {
    let series = (user << 8) | (u32::from(metric as u8) << 4) | window as u32;
    (u64::from(series) << 32) | u64::from(index)
}

#[inline]
fn unpack(key: u64) -> (u32, u8, usize, u32) {
    let series = (key >> 32) as u32;
    (
        series >> 8,
        ((series >> 4) & 0xF) as u8,
        (series & 0xF) as usize,
        key as u32,
    )
}

/// Aggregate states of every key seen, for one set of windows.
#[derive(Debug)]
pub struct AggTable {
    windows: Arc<WindowSet>,
    users: Users,
    /// Slots, found by the hash of their key.
    index: HashTable<u32>,
    /// Key of each slot.
    keys: Vec<u64>,
    chunks: Vec<Vec<AggState>>,
    len: usize,
    caches: Vec<DayCache>,
}

impl AggTable {
    /// An empty table for these windows.
    pub fn new(windows: Arc<WindowSet>) -> Self {
        let caches = vec![DayCache::default(); windows.len()];
        AggTable {
            windows,
            users: Users::default(),
            index: HashTable::new(),
            keys: Vec::new(),
            chunks: Vec::new(),
            len: 0,
            caches,
        }
    }

    /// The windows.
    pub fn windows(&self) -> &Arc<WindowSet> {
        &self.windows
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key was seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let keys = &self.keys;
        self.index
            .find(hash_key(key), |&slot| keys[slot as usize] == key)
            .map(|&slot| slot as usize)
    }

    #[inline]
    fn upsert(&mut self, key: u64, value: f64, sketch_key: i16, at: i64) {
        match self.find(key) {
            Some(slot) => {
                self.chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)]
                    .add_with_key(value, sketch_key, at);
            }
            None => self.insert(key, AggState::with_key(value, sketch_key, at)),
        }
    }

    fn insert(&mut self, key: u64, state: AggState) {
        let slot = self.len as u32;
        let keys = &self.keys;
        self.index
            .insert_unique(hash_key(key), slot, |&s| hash_key(keys[s as usize]));
        self.keys.push(key);
        self.push_state(state);
    }

    fn push_state(&mut self, state: AggState) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        // A chunk was pushed above whenever the last one is full.
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(state);
        }
        self.len += 1;
    }

    /// Adds a valid reading to every window.
    #[inline]
    pub fn add(&mut self, reading: &Reading<'_>) -> Result<(), BatchError> {
        let user = self.users.intern(reading.user_id)?;
        let sketch_key = sketch::key(reading.value);
        for w in 0..self.windows.len() {
            let index = self
                .windows
                .index(w, reading.recorded_at, &mut self.caches[w]);
            let key = pack(user, reading.metric, w, index);
            self.upsert(key, reading.value, sketch_key, reading.recorded_at);
        }
        Ok(())
    }

    /// Merges every key of `other` (built for the same windows) into this table.
    pub fn merge(&mut self, other: AggTable) -> Result<(), BatchError> {
        let AggTable {
            users,
            keys,
            mut chunks,
            ..
        } = other;
        let remap: Vec<u32> = users
            .names
            .iter()
            .map(|name| self.users.intern(name))
            .collect::<Result<_, _>>()?;
        for (slot, key) in keys.into_iter().enumerate() {
            let (user, metric, window, idx) = unpack(key);
            let Some(metric) = Metric::from_id(metric) else {
                continue;
            };
            let key = pack(remap[user as usize], metric, window, idx);
            let state = std::mem::replace(
                &mut chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)],
                AggState::new(0.0, 0),
            );
            match self.find(key) {
                Some(mine) => self.chunks[mine >> CHUNK_BITS][mine & (CHUNK - 1)].merge(&state),
                None => self.insert(key, state),
            }
        }
        Ok(())
    }

    fn state(&self, slot: u32) -> &AggState {
        let slot = slot as usize;
        &self.chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)]
    }

    /// The sort entries of every key, in output order, and the user of each user rank.
    fn order(&self) -> (Vec<Entry>, Vec<u32>) {
        // Ranks make the sort a comparison of integers instead of strings.
        let names = &self.users.names;
        let mut by_rank: Vec<u32> = (0..names.len() as u32).collect();
        by_rank.sort_unstable_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
        let mut user_rank = vec![0u32; by_rank.len()];
        for (rank, user) in by_rank.iter().enumerate() {
            user_rank[*user as usize] = rank as u32;
        }
        let metric_rank = metric_ranks();
        let window_rank = window_ranks(&self.windows);
        let mut order: Vec<Entry> = self
            .keys
            .iter()
            .enumerate()
            .map(|(slot, &key)| {
                let slot = slot as u32;
                let (user, metric, window, idx) = unpack(key);
                let hi = (u64::from(user_rank[user as usize]) << 16)
                    | (u64::from(metric_rank[usize::from(metric)]) << 8)
                    | u64::from(window_rank[window]);
                Entry { hi, idx, slot }
            })
            .collect();
        order.sort_unstable();
        (order, by_rank)
    }

    /// Sorts the keys into output order and drops the lookup index, which output no
    /// longer needs (about a third of the table's memory).
    pub fn into_sorted(mut self) -> SortedTable {
        self.index = HashTable::new();
        let (order, users_by_rank) = self.order();
        let AggTable { users, chunks, .. } = self;
        SortedTable {
            names: users.names,
            users_by_rank,
            chunks,
            order,
        }
    }

    /// Calls `f` with every key's row, in output order.
    pub fn for_each_sorted<E>(
        &self,
        mut f: impl FnMut(&Row<'_>, &AggState) -> Result<(), E>,
    ) -> Result<(), E> {
        let (order, by_rank) = self.order();
        let by_metric = metrics_by_rank();
        let by_window = windows_by_rank(&self.windows);
        for entry in order {
            let state = self.state(entry.slot);
            let user = &self.users.names[by_rank[entry.user_rank()] as usize];
            let row = make_row(&self.windows, user, &by_metric, &by_window, &entry, state);
            f(&row, state)?;
        }
        Ok(())
    }
}

/// A key's place in output order: user rank (32 bits), metric rank and window rank in
/// `hi`, then the window index. Sorting entries sorts rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    hi: u64,
    idx: u32,
    slot: u32,
}

impl Entry {
    fn user_rank(&self) -> usize {
        (self.hi >> 16) as usize
    }
    fn metric_rank(&self) -> u8 {
        (self.hi >> 8) as u8
    }
    fn window_rank(&self) -> u8 {
        self.hi as u8
    }
}

/// Rank of each metric id when metrics are ordered by name.
fn metric_ranks() -> [u8; 16] {
    let mut ranks = [0u8; 16];
    for (rank, m) in metrics_by_rank().iter().enumerate() {
        ranks[*m as usize] = rank as u8;
    }
    ranks
}

/// Metrics ordered by name.
fn metrics_by_rank() -> [Metric; 10] {
    let mut metrics = Metric::ALL;
    metrics.sort_by_key(|m| m.name());
    metrics
}

/// Window numbers ordered by label.
fn windows_by_rank(windows: &WindowSet) -> Vec<usize> {
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|w| windows.windows()[*w].label());
    order
}

/// Rank of each window number when windows are ordered by label.
fn window_ranks(windows: &WindowSet) -> [u8; 16] {
    let mut ranks = [0u8; 16];
    for (rank, w) in windows_by_rank(windows).iter().enumerate() {
        ranks[*w] = rank as u8;
    }
    ranks
}

fn make_row<'a>(
    windows: &'a WindowSet,
    user: &'a str,
    by_metric: &[Metric; 10],
    by_window: &[usize],
    entry: &Entry,
    state: &AggState,
) -> Row<'a> {
    let window = by_window[usize::from(entry.window_rank())];
    let (start, end) = windows.bounds(window, entry.idx);
    Row {
        user_id: user,
        metric: by_metric[usize::from(entry.metric_rank())],
        window: windows.windows()[window].label(),
        window_start: start,
        window_end: end,
        stats: state.stats(),
    }
}

/// A table in output order, without its lookup index.
#[derive(Debug)]
pub struct SortedTable {
    names: Vec<Box<str>>,
    users_by_rank: Vec<u32>,
    chunks: Vec<Vec<AggState>>,
    order: Vec<Entry>,
}

impl SortedTable {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn user(&self, entry: &Entry) -> &str {
        &self.names[self.users_by_rank[entry.user_rank()] as usize]
    }

    fn state(&self, slot: u32) -> &AggState {
        let slot = slot as usize;
        &self.chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)]
    }

    /// The comparable key of entry `i`: user id, metric rank, window rank, window index.
    fn key(&self, i: usize) -> (&str, u8, u8, u32) {
        let e = &self.order[i];
        (self.user(e), e.metric_rank(), e.window_rank(), e.idx)
    }

    /// The first entry whose user id is not below `user`.
    fn first_of_user(&self, user: &str) -> usize {
        self.order.partition_point(|e| self.user(e) < user)
    }
}

/// The rows of several tables (one per worker) in output order, merging the states of
/// keys that appear in more than one — without building a merged table, so output
/// needs no memory beyond the parts.
#[derive(Debug)]
pub struct Merged {
    windows: Arc<WindowSet>,
    parts: Vec<SortedTable>,
    by_metric: [Metric; 10],
    by_window: Vec<usize>,
}

/// For each part, the range of its entries a piece of output covers.
pub(crate) type Ranges = Vec<std::ops::Range<usize>>;

impl Merged {
    /// Sorts each table (dropping its index before sorting the next, to bound memory).
    pub fn new(windows: Arc<WindowSet>, tables: Vec<AggTable>) -> Merged {
        let parts = tables.into_iter().map(AggTable::into_sorted).collect();
        Merged {
            by_metric: metrics_by_rank(),
            by_window: windows_by_rank(&windows),
            windows,
            parts,
        }
    }

    /// The windows.
    pub fn windows(&self) -> &Arc<WindowSet> {
        &self.windows
    }

    /// Entries over all parts (keys present in several parts count once per part).
    pub fn entries(&self) -> usize {
        self.parts.iter().map(SortedTable::len).sum()
    }

    /// Cuts the output into pieces of about `block` entries at user boundaries, so that
    /// pieces can be formatted in parallel and concatenated.
    pub fn split(&self, block: usize) -> Vec<Ranges> {
        let Some(largest) = self.parts.iter().max_by_key(|p| p.len()) else {
            return vec![];
        };
        let mut cuts: Vec<Option<&str>> = Vec::new();
        let mut i = block.max(1);
        while i < largest.len() {
            let user = largest.user(&largest.order[i]);
            if cuts.last().copied().flatten() != Some(user) {
                cuts.push(Some(user));
            }
            i += block.max(1);
        }
        let mut pieces = Vec::with_capacity(cuts.len() + 1);
        let mut starts: Vec<usize> = vec![0; self.parts.len()];
        for cut in cuts.into_iter().chain([None]) {
            let ends: Vec<usize> = self
                .parts
                .iter()
                .map(|p| cut.map_or(p.len(), |u| p.first_of_user(u)))
                .collect();
            pieces.push(starts.iter().zip(&ends).map(|(s, e)| *s..*e).collect());
            starts = ends;
        }
        pieces
    }

    /// All entries of every part.
    pub fn all(&self) -> Ranges {
        self.parts.iter().map(|p| 0..p.len()).collect()
    }

    /// Calls `f` with every row of `ranges` in output order, states of equal keys merged.
    pub fn for_each_in<E>(
        &self,
        ranges: &Ranges,
        mut f: impl FnMut(&Row<'_>, &AggState) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut cursors: Vec<usize> = ranges.iter().map(|r| r.start).collect();
        let mut same: Vec<usize> = Vec::with_capacity(self.parts.len());
        loop {
            same.clear();
            let mut min: Option<(&str, u8, u8, u32)> = None;
            for (p, part) in self.parts.iter().enumerate() {
                if cursors[p] >= ranges[p].end {
                    continue;
                }
                let key = part.key(cursors[p]);
                match min {
                    Some(m) if key > m => {}
                    Some(m) if key == m => same.push(p),
                    _ => {
                        min = Some(key);
                        same.clear();
                        same.push(p);
                    }
                }
            }
            let Some(&first) = same.first() else {
                return Ok(());
            };
            let part = &self.parts[first];
            let entry = part.order[cursors[first]];
            let user = part.user(&entry);
            let merged;
            let state = if same.len() == 1 {
                part.state(entry.slot)
            } else {
                let mut acc = part.state(entry.slot).clone();
                for &p in &same[1..] {
                    let other = &self.parts[p];
                    acc.merge(other.state(other.order[cursors[p]].slot));
                }
                merged = acc;
                &merged
            };
            let row = make_row(
                &self.windows,
                user,
                &self.by_metric,
                &self.by_window,
                &entry,
                state,
            );
            f(&row, state)?;
            for &p in &same {
                cursors[p] += 1;
            }
        }
    }

    /// Calls `f` with every row in output order.
    pub fn for_each<E>(
        &self,
        f: impl FnMut(&Row<'_>, &AggState) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_each_in(&self.all(), f)
    }
}
