//! Where finished runs are kept: the [`RunHistoryStore`] trait and its default, a bounded
//! in-memory [`MemoryHistory`].
//!
//! A durable store (a SQLite or PostgreSQL table) can implement the trait later; the scheduler
//! awaits [`append`](RunHistoryStore::append) as each run ends, so it should be quick, and a
//! failure is logged, never fatal to scheduling.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::error::HistoryError;
use crate::record::RunRecord;

/// The default number of runs kept per job by [`MemoryHistory`].
pub const DEFAULT_HISTORY_PER_JOB: usize = 100;

/// Keeps run records.
#[async_trait]
pub trait RunHistoryStore: Send + Sync + 'static {
    /// Stores a finished (or missed) run.
    async fn append(&self, record: &RunRecord) -> Result<(), HistoryError>;

    /// The job's most recent runs, newest first, at most `limit`.
    async fn recent(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, HistoryError>;
}

/// The last `per_job` runs of each job, in memory.
#[derive(Debug)]
pub struct MemoryHistory {
    per_job: usize,
    runs: Mutex<HashMap<String, VecDeque<RunRecord>>>,
}

impl MemoryHistory {
    /// A history keeping the last `per_job` runs of each job (at least one).
    pub fn new(per_job: usize) -> Self {
        Self {
            per_job: per_job.max(1),
            runs: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY_PER_JOB)
    }
}

#[async_trait]
impl RunHistoryStore for MemoryHistory {
    async fn append(&self, record: &RunRecord) -> Result<(), HistoryError> {
        let mut runs = self.runs.lock();
        let job = runs.entry(record.job.clone()).or_default();
        if job.len() == self.per_job {
            job.pop_front();
        }
        job.push_back(record.clone());
        Ok(())
    }

    async fn recent(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, HistoryError> {
        let runs = self.runs.lock();
        Ok(runs
            .get(job)
            .map(|job| job.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RunStatus, RunTrigger};

    fn record(job: &str, run_id: u64) -> RunRecord {
        let at = chrono::DateTime::UNIX_EPOCH;
        RunRecord {
            job: job.to_owned(),
            run_id,
            trigger: RunTrigger::Manual,
            scheduled_at: None,
            started_at: at,
            finished_at: at,
            status: RunStatus::Ok,
            rows_read: run_id,
            rejected: 0,
            windows_written: 0,
            error: None,
            coalesced: 0,
        }
    }

    #[tokio::test]
    async fn keeps_the_newest_runs_per_job() {
        let history = MemoryHistory::new(3);
        for id in 1..=5 {
            history.append(&record("a", id)).await.unwrap();
        }
        history.append(&record("b", 9)).await.unwrap();
        let ids: Vec<u64> = history
            .recent("a", 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(ids, [5, 4, 3]);
        assert_eq!(history.recent("a", 1).await.unwrap()[0].run_id, 5);
        assert_eq!(history.recent("b", 10).await.unwrap().len(), 1);
        assert!(history.recent("none", 10).await.unwrap().is_empty());
    }
}
