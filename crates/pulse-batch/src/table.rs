//! The in-memory aggregation table: every key's [`AggState`], found by a packed integer.
//!
//! This is the hot path. User ids are interned to `u32`; a key packs the user, metric and
//! window number (the "series", 32 bits) with the window index (32 bits) into one `u64`,
//! hashed with a folded multiply. The map holds only `u64 → u32` (16 bytes a slot) and the
//! states live in fixed-size chunks, so growing never copies them and peak memory stays
//! close to what the states need. Output is produced in the row order of the contract:
//! user id, metric name and window label compared as strings, then window start.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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
pub struct KeyHasher(u64);

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

type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

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
    index: KeyMap,
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
            index: KeyMap::default(),
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
    fn upsert(&mut self, key: u64, value: f64, sketch_key: i16, at: i64) {
        match self.index.entry(key) {
            std::collections::hash_map::Entry::Occupied(slot) => {
                let slot = *slot.get() as usize;
                self.chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)]
                    .add_with_key(value, sketch_key, at);
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(self.len as u32);
                self.push_state(AggState::with_key(value, sketch_key, at));
            }
        }
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

    /// Merges a state into the key (user, metric, window number, window index).
    pub fn merge_state(
        &mut self,
        user_id: &str,
        metric: Metric,
        window: usize,
        index: u32,
        state: &AggState,
    ) -> Result<(), BatchError> {
        let user = self.users.intern(user_id)?;
        let key = pack(user, metric, window, index);
        match self.index.get(&key) {
            Some(&slot) => {
                let slot = slot as usize;
                self.chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)].merge(state);
            }
            None => {
                self.index.insert(key, self.len as u32);
                self.push_state(state.clone());
            }
        }
        Ok(())
    }

    /// Merges every key of `other` (built for the same windows) into this table.
    pub fn merge(&mut self, other: AggTable) -> Result<(), BatchError> {
        let AggTable {
            users,
            index,
            mut chunks,
            ..
        } = other;
        let remap: Vec<u32> = users
            .names
            .iter()
            .map(|name| self.users.intern(name))
            .collect::<Result<_, _>>()?;
        for (key, slot) in index {
            let (user, metric, window, idx) = unpack(key);
            let Some(metric) = Metric::from_id(metric) else {
                continue;
            };
            let key = pack(remap[user as usize], metric, window, idx);
            let slot = slot as usize;
            let state = std::mem::replace(
                &mut chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)],
                AggState::new(0.0, 0),
            );
            match self.index.get(&key) {
                Some(&mine) => {
                    let mine = mine as usize;
                    self.chunks[mine >> CHUNK_BITS][mine & (CHUNK - 1)].merge(&state);
                }
                None => {
                    self.index.insert(key, self.len as u32);
                    self.push_state(state);
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with every key's row, in output order.
    pub fn for_each_sorted<E>(
        &self,
        mut f: impl FnMut(&Row<'_>, &AggState) -> Result<(), E>,
    ) -> Result<(), E> {
        // Ranks make the sort a comparison of integers instead of strings.
        let mut by_name: Vec<u32> = (0..self.users.names.len() as u32).collect();
        by_name.sort_unstable_by(|a, b| {
            self.users.names[*a as usize].cmp(&self.users.names[*b as usize])
        });
        let mut user_rank = vec![0u32; by_name.len()];
        for (rank, user) in by_name.iter().enumerate() {
            user_rank[*user as usize] = rank as u32;
        }
        let mut metrics = Metric::ALL;
        metrics.sort_by_key(|m| m.name());
        let mut metric_rank = [0u8; 16];
        for (rank, m) in metrics.iter().enumerate() {
            metric_rank[*m as usize] = rank as u8;
        }
        let mut windows: Vec<usize> = (0..self.windows.len()).collect();
        windows.sort_by_key(|w| self.windows.windows()[*w].label());
        let mut window_rank = [0u8; 16];
        for (rank, w) in windows.iter().enumerate() {
            window_rank[*w] = rank as u8;
        }
        // Within one (user, metric, window) the series bits are equal, so ordering by the
        // packed key orders by window index, i.e. by window start.
        let mut order: Vec<(u64, u64, u32)> = self
            .index
            .iter()
            .map(|(&key, &slot)| {
                let (user, metric, window, _) = unpack(key);
                let hi = (u64::from(user_rank[user as usize]) << 32)
                    | (u64::from(metric_rank[usize::from(metric)]) << 8)
                    | u64::from(window_rank[window]);
                (hi, key, slot)
            })
            .collect();
        order.sort_unstable();
        for (_, key, slot) in order {
            let slot = slot as usize;
            let state = &self.chunks[slot >> CHUNK_BITS][slot & (CHUNK - 1)];
            let (user, metric, window, idx) = unpack(key);
            let Some(metric) = Metric::from_id(metric) else {
                continue;
            };
            let (start, end) = self.windows.bounds(window, idx);
            let row = Row {
                user_id: &self.users.names[user as usize],
                metric,
                window: self.windows.windows()[window].label(),
                window_start: start,
                window_end: end,
                stats: state.stats(),
            };
            f(&row, state)?;
        }
        Ok(())
    }
}
