//! The mergeable aggregate state of one (user, metric, window, window start) key.
//!
//! Count, sum, min and max merge trivially; the mean and the sum of squared deviations
//! (`m2`) follow Welford on insert and Chan et al.'s parallel formula on merge, which
//! stay accurate where the textbook `Σx² − (Σx)²/n` cancels catastrophically. The quantile
//! sketch merges bucket by bucket. So merging the states of two sets of readings gives
//! the state of their union — what makes late data, parallel parts and incremental runs
//! all the same operation.

use crate::sketch::{self, Sketch};
use crate::time::Micros;

/// Aggregate state of one key.
#[derive(Clone, Debug, PartialEq)]
pub struct AggState {
    /// Readings aggregated.
    pub count: u64,
    /// Sum of values.
    pub sum: f64,
    /// Running mean (Welford).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Time of the earliest reading.
    pub first_at: Micros,
    /// Time of the latest reading.
    pub last_at: Micros,
    /// Quantile sketch.
    pub sketch: Sketch,
}

/// The statistics of a window, as output rows carry them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Readings.
    pub count: u64,
    /// Sum.
    pub sum: f64,
    /// Mean.
    pub avg: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Sample standard deviation (n − 1); `None` below two readings.
    pub stddev: Option<f64>,
    /// Median estimate.
    pub p50: f64,
    /// 95th percentile estimate.
    pub p95: f64,
    /// 99th percentile estimate.
    pub p99: f64,
}

impl AggState {
    /// The state of a single reading.
    #[inline]
    pub fn new(value: f64, at: Micros) -> Self {
        Self::with_key(value, sketch::key(value), at)
    }

    /// Like [`new`](Self::new) with the sketch key computed by the caller.
    #[inline]
    pub fn with_key(value: f64, key: i16, at: Micros) -> Self {
        let mut sketch = Sketch::default();
        sketch.insert_key(key);
        AggState {
            count: 1,
            sum: value,
            mean: value,
            m2: 0.0,
            min: value,
            max: value,
            first_at: at,
            last_at: at,
            sketch,
        }
    }

    /// Adds one reading.
    #[inline]
    pub fn add(&mut self, value: f64, at: Micros) {
        self.add_with_key(value, sketch::key(value), at);
    }

    /// Like [`add`](Self::add) with the sketch key computed by the caller.
    #[inline]
    pub fn add_with_key(&mut self, value: f64, key: i16, at: Micros) {
        self.count += 1;
        self.sum += value;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.first_at = self.first_at.min(at);
        self.last_at = self.last_at.max(at);
        self.sketch.insert_key(key);
    }

    /// Merges `other` in: the result is the state of both sets of readings.
    pub fn merge(&mut self, other: &AggState) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let na = self.count as f64;
        let nb = other.count as f64;
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.first_at = self.first_at.min(other.first_at);
        self.last_at = self.last_at.max(other.last_at);
        self.sketch.merge(&other.sketch);
    }

    /// The window's statistics. Quantile estimates are clamped to [min, max], which can
    /// only bring them closer to the true order statistics.
    pub fn stats(&self) -> Stats {
        let [p50, p95, p99] = self
            .sketch
            .quantiles([0.5, 0.95, 0.99])
            .map_or([self.mean; 3], |qs| qs.map(|v| v.clamp(self.min, self.max)));
        Stats {
            count: self.count,
            sum: self.sum,
            avg: self.mean,
            min: self.min,
            max: self.max,
            stddev: (self.count >= 2).then(|| (self.m2.max(0.0) / (self.count - 1) as f64).sqrt()),
            p50,
            p95,
            p99,
        }
    }

    /// A compact binary form for stored state.
    pub fn to_bytes(&self) -> Vec<u8> {
        let sketch = self.sketch.to_bytes();
        let mut out = Vec::with_capacity(1 + 64 + sketch.len());
        out.push(1u8); // format version
        out.extend_from_slice(&self.count.to_le_bytes());
        for f in [self.sum, self.mean, self.m2, self.min, self.max] {
            out.extend_from_slice(&f.to_le_bytes());
        }
        out.extend_from_slice(&self.first_at.to_le_bytes());
        out.extend_from_slice(&self.last_at.to_le_bytes());
        out.extend_from_slice(&sketch);
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes); `None` when the bytes are not that form.
    pub fn from_bytes(bytes: &[u8]) -> Option<AggState> {
        let (&version, rest) = bytes.split_first()?;
        if version != 1 || rest.len() < 64 {
            return None;
        }
        let word = |i: usize| -> Option<[u8; 8]> { rest.get(i * 8..i * 8 + 8)?.try_into().ok() };
        let f = |i: usize| word(i).map(f64::from_le_bytes);
        let state = AggState {
            count: u64::from_le_bytes(word(0)?),
            sum: f(1)?,
            mean: f(2)?,
            m2: f(3)?,
            min: f(4)?,
            max: f(5)?,
            first_at: i64::from_le_bytes(word(6)?),
            last_at: i64::from_le_bytes(word(7)?),
            sketch: Sketch::from_bytes(&rest[64..])?,
        };
        (state.count == state.sketch.count()).then_some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn aggregate(values: &[f64]) -> Option<AggState> {
        let (first, rest) = values.split_first()?;
        let mut s = AggState::new(*first, 0);
        for (i, v) in rest.iter().enumerate() {
            s.add(*v, i as i64 + 1);
        }
        Some(s)
    }

    #[test]
    fn stddev_is_sample_and_null_below_two() {
        let one = AggState::new(5.0, 10);
        assert_eq!(one.stats().stddev, None);
        let s = aggregate(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        let stats = s.map(|s| s.stats());
        let sd = stats.and_then(|s| s.stddev).unwrap_or(f64::NAN);
        assert!((sd - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn bytes_round_trip() {
        let s = aggregate(&[60.0, 72.5, 80.0, 101.0]);
        let back = s.as_ref().and_then(|s| AggState::from_bytes(&s.to_bytes()));
        assert_eq!(back, s);
        assert_eq!(AggState::from_bytes(&[2, 0, 0]), None);
        let mut bad = s.map(|s| s.to_bytes()).unwrap_or_default();
        bad[1] = 9; // count no longer matches the sketch
        assert_eq!(AggState::from_bytes(&bad), None);
    }

    proptest! {
        #[test]
        fn merge_is_union(a in prop::collection::vec(-1e3f64..1e3, 1..50), b in prop::collection::vec(-1e3f64..1e3, 1..50)) {
            let (Some(mut sa), Some(sb)) = (aggregate(&a), aggregate(&b)) else { return Ok(()) };
            let all: Vec<f64> = a.iter().chain(&b).copied().collect();
            let Some(su) = aggregate(&all) else { return Ok(()) };
            sa.merge(&sb);
            prop_assert_eq!(sa.count, su.count);
            prop_assert_eq!(sa.min, su.min);
            prop_assert_eq!(sa.max, su.max);
            prop_assert!((sa.sum - su.sum).abs() <= 1e-9 * su.sum.abs().max(1.0));
            prop_assert!((sa.mean - su.mean).abs() <= 1e-9 * su.mean.abs().max(1.0));
            prop_assert!((sa.m2 - su.m2).abs() <= 1e-7 * su.m2.abs().max(1.0));
            prop_assert_eq!(sa.sketch.buckets(), su.sketch.buckets());
        }
    }
}
