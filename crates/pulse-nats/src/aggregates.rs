//! NATS JetStream KV as the [`AggregateStore`] of pulse-batch jobs, shared by every
//! instance on the prefix.
//!
//! KV has no transaction spanning keys, so a run's commit is made safe against crashes
//! and against a concurrent run by compare-and-set writes (KV `update` with the expected
//! revision, revision 0 meaning "absent") and a write-ahead intent:
//!
//! 1. the job's checkpoint entry `c.<job>` goes from `{"done": from}` to
//!    `{"done": from, "pending": to}` — only if it still holds `{"done": from}`; a run
//!    that finds it elsewhere commits nothing ([`BatchError::CheckpointMoved`]);
//! 2. every aggregate key the run touched is merged and rewritten, each by CAS on its own
//!    revision. An aggregate entry holds its state and `upto`, the end offset of the last
//!    range merged into it; a key whose `upto` is already `to` is skipped;
//! 3. the checkpoint becomes `{"done": to}`, by CAS on the intent's revision.
//!
//! A crash anywhere leaves either no intent (nothing was written) or an intent. The next
//! run — here or on another instance — sees the intent
//! ([`Checkpoint::pending`](pulse_batch::Checkpoint)), aggregates exactly the range
//! `from..=to` again (the log is immutable, so the delta is the same) and commits it from
//! step 2: keys already written are skipped, the others merged, so each reading counts
//! once. Two instances completing the same intent at once are kept apart by the per-key
//! CAS and the `upto` check; only one of them moves the checkpoint. (Should the stream's
//! retention drop events of an interrupted range before it is completed, the delta
//! recomputed lacks them: missing from the aggregates, never counted twice.)
//!
//! Keys: `a.<job>.<user>.<metric>.<window>.<start µs>`, job, user and window
//! base64url-encoded (as every name in Pulse's KV), so one user's metric in one window
//! size is the subject filter `a.<job>.<user>.<metric>.<window>.*`: a query lists the
//! matching subjects from the bucket's stream, filters them by window start and reads
//! those entries.

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use pulse_batch::time::Micros;
use pulse_batch::AggState;
use pulse_batch::Merged;
use pulse_batch::Metric;
use pulse_batch::WindowSet;
use pulse_batch::{failpoint, BatchError};
use pulse_batch::{AggregateQuery, AggregateStore, Checkpoint, StoredRow};
use pulse_core::LogError;
use serde::{Deserialize, Serialize};

use crate::append::id_key;
use crate::error::classify;
use crate::log::ensure_bucket;
use crate::NatsLog;

/// Aggregate keys read or written at once.
const CONCURRENCY: usize = 64;
/// Version of the aggregate entry encoding.
const ENTRY_VERSION: u8 = 1;
const ENTRY_HEADER: usize = 1 + 8 + 8;

/// The checkpoint entry of a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    done: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<u64>,
}

/// A name as one key token: base64url, `=` for the empty name (never base64url output).
fn token(name: &str) -> String {
    if name.is_empty() {
        "=".to_owned()
    } else {
        id_key(name)
    }
}

fn checkpoint_key(job: &str) -> String {
    format!("c.{}", token(job))
}

fn series_key(job: &str, user: &str, metric: &str, window: &str) -> String {
    format!(
        "a.{}.{}.{}.{}",
        token(job),
        token(user),
        token(metric),
        token(window)
    )
}

/// An aggregate entry: version, `upto`, window end, then the state.
fn encode_entry(upto: u64, window_end: Micros, state: &AggState) -> Bytes {
    let state = state.to_bytes();
    let mut out = Vec::with_capacity(ENTRY_HEADER + state.len());
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&upto.to_le_bytes());
    out.extend_from_slice(&window_end.to_le_bytes());
    out.extend_from_slice(&state);
    out.into()
}

fn decode_entry(bytes: &[u8]) -> Option<(u64, Micros, AggState)> {
    if bytes.len() < ENTRY_HEADER || bytes[0] != ENTRY_VERSION {
        return None;
    }
    let upto = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
    let end = i64::from_le_bytes(bytes[9..17].try_into().ok()?);
    Some((upto, end, AggState::from_bytes(&bytes[ENTRY_HEADER..])?))
}

fn log_error(err: LogError) -> BatchError {
    BatchError::Log(err)
}

fn damaged(job: &str, key: &str) -> BatchError {
    BatchError::State {
        path: format!("nats aggregates of job {job}").into(),
        reason: format!("damaged entry {key}"),
    }
}

/// One key of a commit.
struct KeyDelta {
    key: String,
    window_end: Micros,
    state: AggState,
}

impl NatsLog {
    async fn aggregates(&self) -> Result<&kv::Store, BatchError> {
        let shared = &self.shared;
        shared
            .aggregates
            .get_or_try_init(|| {
                ensure_bucket(
                    &shared.client,
                    &shared.js,
                    &shared.names.aggregates_bucket,
                    std::time::Duration::ZERO,
                    self.storage(),
                )
            })
            .await
            .map_err(log_error)
    }

    fn kv_error(&self, what: &str, err: impl std::fmt::Display) -> BatchError {
        log_error(classify(&self.shared.client, what, err))
    }

    /// The job's checkpoint entry and its revision (0 when absent).
    async fn progress(&self, job: &str) -> Result<(Progress, u64), BatchError> {
        let kv = self.aggregates().await?;
        let key = checkpoint_key(job);
        match kv
            .entry(key.clone())
            .await
            .map_err(|e| self.kv_error("cannot read a job checkpoint", e))?
        {
            Some(entry) if entry.operation == Operation::Put => {
                let progress =
                    serde_json::from_slice(&entry.value).map_err(|_| damaged(job, &key))?;
                Ok((progress, entry.revision))
            }
            _ => Ok((Progress::default(), 0)),
        }
    }

    /// Writes `progress` as the checkpoint of `job` if its revision is still `revision`;
    /// `Ok(None)` when it is not.
    async fn swap_progress(
        &self,
        job: &str,
        progress: Progress,
        revision: u64,
    ) -> Result<Option<u64>, BatchError> {
        let kv = self.aggregates().await?;
        let value = serde_json::to_vec(&progress).map_err(|e| damaged(job, &e.to_string()))?;
        match kv.update(checkpoint_key(job), value.into(), revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(self.kv_error("cannot write a job checkpoint", e)),
        }
    }

    /// The error for a run that lost the race: where the checkpoint is now.
    async fn moved(&self, job: &str, from: u64) -> BatchError {
        let found = match self.progress(job).await {
            Ok((p, _)) => p.pending.unwrap_or(p.done),
            Err(e) => return e,
        };
        BatchError::CheckpointMoved {
            job: job.to_owned(),
            expected: from,
            found,
        }
    }

    /// Merges one key's delta unless the stored entry already includes `upto`; returns
    /// whether it wrote.
    async fn apply_key(&self, job: &str, delta: &KeyDelta, upto: u64) -> Result<bool, BatchError> {
        let kv = self.aggregates().await?;
        loop {
            let current = kv
                .entry(delta.key.clone())
                .await
                .map_err(|e| self.kv_error("cannot read an aggregate", e))?;
            let (merged, revision) = match current {
                Some(entry) if entry.operation == Operation::Put => {
                    let (stored_upto, _, mut stored) =
                        decode_entry(&entry.value).ok_or_else(|| damaged(job, &delta.key))?;
                    if stored_upto >= upto {
                        return Ok(false);
                    }
                    stored.merge(&delta.state);
                    (stored, entry.revision)
                }
                Some(entry) => (delta.state.clone(), entry.revision),
                None => (delta.state.clone(), 0),
            };
            let value = encode_entry(upto, delta.window_end, &merged);
            match kv.update(&delta.key, value, revision).await {
                Ok(_) => return Ok(true),
                // Another instance completing the same range wrote it first: look again.
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(self.kv_error("cannot write an aggregate", e)),
            }
        }
    }

    /// Commits `delta` for `job`, moving its checkpoint from `from` to `to` (see the
    /// module docs); fails with [`BatchError::CheckpointMoved`] when another run
    /// committed first. Returns the keys written.
    pub async fn commit_aggregates(
        &self,
        job: &str,
        delta: &Merged,
        from: u64,
        to: u64,
    ) -> Result<u64, BatchError> {
        let (progress, revision) = self.progress(job).await?;
        if progress.done != from {
            return Err(self.moved(job, from).await);
        }
        let intent = match progress.pending {
            // An interrupted commit of this very range: complete it.
            Some(pending) if pending == to => revision,
            Some(_) => return Err(self.moved(job, from).await),
            None => {
                let intent = Progress {
                    done: from,
                    pending: Some(to),
                };
                match self.swap_progress(job, intent, revision).await? {
                    Some(revision) => revision,
                    None => return Err(self.moved(job, from).await),
                }
            }
        };
        failpoint::hit("nats.aggregates.after_intent");
        let mut keys: Vec<KeyDelta> = Vec::with_capacity(delta.entries());
        delta.for_each(|row, state| -> Result<(), BatchError> {
            let series = series_key(job, row.user_id, row.metric.name(), row.window);
            keys.push(KeyDelta {
                key: format!("{series}.{}", row.window_start),
                window_end: row.window_end,
                state: state.clone(),
            });
            Ok(())
        })?;
        let mut written = 0u64;
        // Futures collected first: a closure inside the stream would not be `Send` for
        // every lifetime, as `async_trait` needs.
        let writes: Vec<_> = keys
            .iter()
            .map(|key| self.apply_key(job, key, to))
            .collect();
        let mut applied = futures::stream::iter(writes).buffer_unordered(CONCURRENCY);
        while let Some(wrote) = applied.try_next().await? {
            written += u64::from(wrote);
            failpoint::hit("nats.aggregates.after_first_key");
        }
        failpoint::hit("nats.aggregates.after_keys");
        let done = Progress {
            done: to,
            pending: None,
        };
        match self.swap_progress(job, done, intent).await? {
            Some(_) => Ok(written),
            None => Err(self.moved(job, from).await),
        }
    }

    /// The rows of `job` that `q` selects, by window start.
    pub async fn query_aggregates(
        &self,
        job: &str,
        q: &AggregateQuery,
    ) -> Result<Vec<StoredRow>, BatchError> {
        let kv = self.aggregates().await?;
        let Some(metric) = Metric::from_name(q.metric.as_bytes()) else {
            return Ok(Vec::new());
        };
        let series = series_key(job, &q.user_id, metric.name(), &q.window);
        let filter = format!("{}{series}.*", kv.prefix);
        let subjects: Vec<(String, usize)> = kv
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| self.kv_error("cannot list aggregates", e))?
            .try_collect()
            .await
            .map_err(|e| self.kv_error("cannot list aggregates", e))?;
        let mut starts: Vec<Micros> = subjects
            .iter()
            .filter_map(|(subject, _)| subject.rsplit('.').next()?.parse::<Micros>().ok())
            .filter(|start| (q.from_us..q.to_us).contains(start))
            .collect();
        starts.sort_unstable();
        starts.truncate(q.limit);
        let series = &series;
        let reads: Vec<_> = starts
            .into_iter()
            .map(|start| async move {
                let key = format!("{series}.{start}");
                let entry = kv
                    .entry(key.clone())
                    .await
                    .map_err(|e| self.kv_error("cannot read an aggregate", e))?;
                let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
                    return Ok(None);
                };
                let (_, window_end, state) =
                    decode_entry(&entry.value).ok_or_else(|| damaged(job, &key))?;
                Ok::<_, BatchError>(Some(StoredRow {
                    user_id: q.user_id.clone(),
                    metric,
                    window: q.window.clone(),
                    window_start: start,
                    window_end,
                    stats: state.stats(),
                }))
            })
            .collect();
        let rows: Vec<Option<StoredRow>> = futures::stream::iter(reads)
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(rows.into_iter().flatten().collect())
    }
}

/// Every instance on the prefix shares one set of aggregates and checkpoints.
#[async_trait]
impl AggregateStore for NatsLog {
    async fn checkpoint(&self, job: &str, _windows: &WindowSet) -> Result<Checkpoint, BatchError> {
        let (progress, _) = self.progress(job).await?;
        Ok(Checkpoint {
            done: progress.done,
            pending: progress.pending,
        })
    }

    async fn commit(
        &self,
        job: &str,
        delta: Merged,
        from: u64,
        to: u64,
    ) -> Result<u64, BatchError> {
        self.commit_aggregates(job, &delta, from, to).await
    }

    async fn query(&self, job: &str, query: &AggregateQuery) -> Result<Vec<StoredRow>, BatchError> {
        self.query_aggregates(job, query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let mut state = AggState::new(70.0, 1_000);
        state.add(80.0, 2_000);
        let bytes = encode_entry(42, 300_000_000, &state);
        let (upto, end, back) = decode_entry(&bytes).unwrap();
        assert_eq!((upto, end), (42, 300_000_000));
        assert_eq!(back.stats(), state.stats());
        assert!(decode_entry(&bytes[..5]).is_none());
    }

    #[test]
    fn progress_is_small_json() {
        let p = Progress {
            done: 5,
            pending: None,
        };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"done":5}"#);
        let p: Progress = serde_json::from_str(r#"{"done":5,"pending":9}"#).unwrap();
        assert_eq!(p.pending, Some(9));
    }

    #[test]
    fn keys_are_valid_tokens_and_names_stay_apart() {
        let a = series_key("job", "user.1", "heart_rate", "5m");
        assert_eq!(a.split('.').count(), 5);
        assert_ne!(series_key("", "u", "m", "w"), series_key("u", "", "m", "w"));
        assert!(checkpoint_key("j").starts_with("c."));
    }
}
