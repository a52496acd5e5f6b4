//! A DDSketch-style quantile sketch with a relative-error guarantee, mergeable and compact.
//!
//! A value `x > 0` falls in bucket `b = ceil(log_γ x)` with `γ = (1+α)/(1−α)`; the bucket
//! is represented by `2γ^b/(γ+1)`, which is within `α` of every value of the bucket. So
//! the estimate of the value of rank `r` is within `α` (relatively) of the true value of
//! rank `r` — the guarantee quantiles need. Negative values mirror positive ones; zero
//! (and magnitudes below 1e-100) has a bucket of its own. `α` is 0.99 %, leaving margin
//! under the promised 1 % for rounding in `ln`.
//!
//! Buckets are 16-bit keys ordered like the values they stand for. Most windows hold a
//! handful of readings (five heart-rate readings in a 5-minute window), so the first
//! [`INLINE`] keys live inline with no heap allocation; larger sketches keep a sorted
//! vector of (key, count). Merging adds counts per key, so merging two sketches is exactly
//! the sketch of the union.

use std::cmp::Ordering;
use std::sync::OnceLock;

/// The relative accuracy: every quantile estimate is within this fraction of the value
/// of the rank it estimates (for magnitudes between 1e-100 and 1e100, and zero).
pub const RELATIVE_ACCURACY: f64 = 0.0099;

/// Keys kept inline before the sketch moves to the heap.
pub const INLINE: usize = 11;

const GAMMA: f64 = 1.019_997_980_002_02;
const INV_LN_GAMMA: f64 = 50.503_400_461_923_84;
const LN_GAMMA: f64 = 0.019_800_646_904_042_287;
/// Bucket exponents are clamped to ±`MAX_EXP` (about 1e±100).
const MAX_EXP: i32 = 11_700;
/// Key of bucket exponent 0 for positive values; negatives use the negated key.
const OFFSET: i32 = 12_000;
const MIN_MAGNITUDE: f64 = 1e-100;

/// The bucket key of a value. Keys order like values.
#[inline]
pub fn key(x: f64) -> i16 {
    let magnitude = x.abs();
    // NaN falls here too: it has no bucket, and validation never lets one through.
    if magnitude.is_nan() || magnitude < MIN_MAGNITUDE {
        return 0;
    }
    let exp = (magnitude.ln() * INV_LN_GAMMA).ceil();
    // `as` saturates, and the clamp keeps the key within ±23700.
    let exp = (exp as i32).clamp(-MAX_EXP, MAX_EXP);
    let key = OFFSET + exp;
    (if x > 0.0 { key } else { -key }) as i16
}

/// The representative value of a bucket key.
#[inline]
pub fn value(key: i16) -> f64 {
    // Output computes three per window; a table of the positive half (190 KB, built once)
    // turns the `exp` into a load.
    static POSITIVE: OnceLock<Box<[f64]>> = OnceLock::new();
    let table = POSITIVE.get_or_init(|| (0..=OFFSET + MAX_EXP).map(compute_value).collect());
    let k = i32::from(key);
    match table.get(k.unsigned_abs() as usize) {
        Some(v) if k >= 0 => *v,
        Some(v) => -*v,
        None => compute_value(k),
    }
}

fn compute_value(k: i32) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let exp = k.abs() - OFFSET;
    let v = 2.0 * (f64::from(exp) * LN_GAMMA).exp() / (GAMMA + 1.0);
    if k > 0 {
        v
    } else {
        -v
    }
}

#[derive(Clone, Debug)]
enum Repr {
    /// Up to `INLINE` keys, one per value, unsorted.
    Inline { len: u8, keys: [i16; INLINE] },
    /// Sorted by key, counts > 0. Boxed so that the inline form sets the enum's size
    /// (24 bytes instead of 32 across every key of a run); the extra indirection only
    /// costs on sketches past the inline capacity.
    #[allow(clippy::box_collection)]
    Buckets(Box<Vec<(i16, u32)>>),
}

/// A mergeable relative-error quantile sketch.
///
/// ```
/// use pulse_batch::sketch::Sketch;
/// let mut sketch = Sketch::default();
/// for v in 1..=100 {
///     sketch.insert(f64::from(v));
/// }
/// let p50 = sketch.quantile(0.5).unwrap();
/// assert!((p50 - 50.0).abs() <= 0.01 * 50.0 || (p50 - 51.0).abs() <= 0.01 * 51.0);
/// ```
#[derive(Clone, Debug)]
pub struct Sketch {
    repr: Repr,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            repr: Repr::Inline {
                len: 0,
                keys: [0; INLINE],
            },
        }
    }
}

impl PartialEq for Sketch {
    fn eq(&self, other: &Self) -> bool {
        self.buckets() == other.buckets()
    }
}

fn add_bucket(buckets: &mut Vec<(i16, u32)>, key: i16, count: u32) {
    match buckets.binary_search_by(|(k, _)| k.cmp(&key)) {
        // Four billion readings in one bucket of one window cannot happen in practice;
        // saturating keeps the sketch usable if it ever did.
        Ok(i) => buckets[i].1 = buckets[i].1.saturating_add(count),
        Err(i) => buckets.insert(i, (key, count)),
    }
}

fn group_sorted(keys: &mut [i16]) -> Vec<(i16, u32)> {
    keys.sort_unstable();
    let mut out: Vec<(i16, u32)> = Vec::with_capacity(keys.len());
    for &k in keys.iter() {
        match out.last_mut() {
            Some((last, count)) if *last == k => *count += 1,
            _ => out.push((k, 1)),
        }
    }
    out
}

impl Sketch {
    /// Adds one value.
    #[inline]
    pub fn insert(&mut self, x: f64) {
        self.insert_key(key(x));
    }

    /// Adds one value given by its bucket key (see [`key`]); lets a caller that feeds
    /// several sketches compute the logarithm once.
    #[inline]
    pub fn insert_key(&mut self, key: i16) {
        match &mut self.repr {
            Repr::Inline { len, keys } if usize::from(*len) < INLINE => {
                keys[usize::from(*len)] = key;
                *len += 1;
            }
            Repr::Inline { len, keys } => {
                let mut buckets = group_sorted(&mut keys[..usize::from(*len)]);
                add_bucket(&mut buckets, key, 1);
                self.repr = Repr::Buckets(Box::new(buckets));
            }
            Repr::Buckets(buckets) => add_bucket(buckets, key, 1),
        }
    }

    /// The number of values added.
    pub fn count(&self) -> u64 {
        match &self.repr {
            Repr::Inline { len, .. } => u64::from(*len),
            Repr::Buckets(b) => b.iter().map(|(_, c)| u64::from(*c)).sum(),
        }
    }

    /// The (key, count) pairs, sorted by key.
    pub fn buckets(&self) -> Vec<(i16, u32)> {
        match &self.repr {
            Repr::Inline { len, keys } => {
                let mut keys = *keys;
                group_sorted(&mut keys[..usize::from(*len)])
            }
            Repr::Buckets(b) => b.as_ref().clone(),
        }
    }

    /// Adds every value of `other`: the result is the sketch of the union.
    pub fn merge(&mut self, other: &Sketch) {
        if let Repr::Inline { len, keys } = &other.repr {
            for &k in &keys[..usize::from(*len)] {
                self.insert_key(k);
            }
            return;
        }
        let mut mine = self.buckets();
        for (k, c) in other.buckets() {
            add_bucket(&mut mine, k, c);
        }
        self.repr = Repr::Buckets(Box::new(mine));
    }

    /// Estimates the value of rank `floor(q·(n−1))` (0-based) among the `n` values
    /// added, within [`RELATIVE_ACCURACY`]. `None` when empty or `q` is outside 0..=1.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantiles([q]).map(|[v]| v)
    }

    /// Several quantiles in one pass (see [`quantile`](Self::quantile)).
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> Option<[f64; N]> {
        if qs.iter().any(|q| !(0.0..=1.0).contains(q)) {
            return None;
        }
        let n = self.count();
        if n == 0 {
            return None;
        }
        let ranks = qs.map(|q| ((q * (n - 1) as f64).floor() as u64).min(n - 1));
        let keys = match &self.repr {
            Repr::Inline { len, keys } => {
                let mut sorted = *keys;
                let sorted = &mut sorted[..usize::from(*len)];
                sorted.sort_unstable();
                ranks.map(|r| sorted[r as usize])
            }
            Repr::Buckets(buckets) => ranks.map(|rank| {
                // Buckets are few (a hundred for a day of heart rate); a walk per rank is
                // cheaper than anything cleverer.
                let mut seen = 0u64;
                for (k, c) in buckets.iter() {
                    seen += u64::from(*c);
                    if seen > rank {
                        return *k;
                    }
                }
                buckets.last().map_or(0, |(k, _)| *k)
            }),
        };
        Some(keys.map(value))
    }

    /// A compact binary form: (key i16 LE, count u32 LE) pairs sorted by key.
    pub fn to_bytes(&self) -> Vec<u8> {
        let buckets = self.buckets();
        let mut out = Vec::with_capacity(buckets.len() * 6);
        for (k, c) in buckets {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes); `None` when the bytes are not that form.
    pub fn from_bytes(bytes: &[u8]) -> Option<Sketch> {
        if bytes.len() % 6 != 0 {
            return None;
        }
        let mut buckets: Vec<(i16, u32)> = Vec::with_capacity(bytes.len() / 6);
        for pair in bytes.chunks_exact(6) {
            let k = i16::from_le_bytes([pair[0], pair[1]]);
            let c = u32::from_le_bytes([pair[2], pair[3], pair[4], pair[5]]);
            let increasing = buckets
                .last()
                .is_none_or(|(last, _)| last.cmp(&k) == Ordering::Less);
            if c == 0 || !increasing {
                return None;
            }
            buckets.push((k, c));
        }
        Some(Sketch {
            repr: Repr::Buckets(Box::new(buckets)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_ok(sorted: &[f64], q: f64, estimate: f64) -> bool {
        let pos = q * (sorted.len() - 1) as f64;
        [pos.floor() as usize, pos.ceil() as usize]
            .iter()
            .any(|&r| {
                let x = sorted[r];
                (estimate - x).abs() <= 0.01 * x.abs()
            })
    }

    #[test]
    fn sketch_is_small_and_inline_first() {
        assert!(
            std::mem::size_of::<Sketch>() <= 24,
            "{}",
            std::mem::size_of::<Sketch>()
        );
        let mut s = Sketch::default();
        for v in [3.0, 1.0, 2.0] {
            s.insert(v);
        }
        assert_eq!(s.count(), 3);
        assert!(matches!(s.repr, Repr::Inline { len: 3, .. }));
    }

    #[test]
    fn keys_order_like_values() {
        let values = [
            -1e50, -3.0, -1.0, -1e-50, 0.0, 1e-120, 1e-50, 0.5, 1.0, 72.0, 1e99,
        ];
        for pair in values.windows(2) {
            assert!(key(pair[0]) <= key(pair[1]), "{pair:?}");
        }
        for v in [1e-99, 0.001, 1.0, 72.0, 1e5, 1e99, -42.0] {
            let r = value(key(v));
            assert!(
                (r - v).abs() <= RELATIVE_ACCURACY * v.abs() * (1.0 + 1e-12),
                "{v} -> {r}"
            );
        }
    }

    #[test]
    fn empty_and_bad_q() {
        let s = Sketch::default();
        assert_eq!(s.quantile(0.5), None);
        let mut s = Sketch::default();
        s.insert(1.0);
        assert_eq!(s.quantile(1.5), None);
        assert_eq!(s.quantile(f64::NAN), None);
    }

    #[test]
    fn bytes_round_trip_and_garbage_is_refused() {
        let mut s = Sketch::default();
        for v in 0..100 {
            s.insert(f64::from(v) * 1.7);
        }
        let bytes = s.to_bytes();
        assert_eq!(Sketch::from_bytes(&bytes), Some(s));
        assert_eq!(Sketch::from_bytes(&bytes[..5]), None);
        assert_eq!(Sketch::from_bytes(&[0, 0, 0, 0, 0, 0]), None);
        let mut unsorted = bytes[6..12].to_vec();
        unsorted.extend_from_slice(&bytes[..6]);
        assert_eq!(Sketch::from_bytes(&unsorted), None);
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_bound(
            values in prop::collection::vec(prop_oneof![-1e6f64..1e6, 0.0f64..300.0, Just(0.0)], 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut s = Sketch::default();
            for v in &values {
                s.insert(*v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            for q in [q, 0.5, 0.95, 0.99, 0.0, 1.0] {
                let est = s.quantile(q).unwrap_or(f64::NAN);
                prop_assert!(exact_ok(&sorted, q, est), "q={q} est={est} sorted={sorted:?}");
            }
        }

        #[test]
        fn merge_equals_union(
            a in prop::collection::vec(0.1f64..1000.0, 0..30),
            b in prop::collection::vec(0.1f64..1000.0, 0..30),
        ) {
            let mut sa = Sketch::default();
            a.iter().for_each(|v| sa.insert(*v));
            let mut sb = Sketch::default();
            b.iter().for_each(|v| sb.insert(*v));
            let mut union = Sketch::default();
            a.iter().chain(&b).for_each(|v| union.insert(*v));
            sa.merge(&sb);
            prop_assert_eq!(sa.count(), (a.len() + b.len()) as u64);
            prop_assert_eq!(sa.buckets(), union.buckets());
        }
    }
}
