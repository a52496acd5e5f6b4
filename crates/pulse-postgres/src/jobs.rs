//! Scheduled jobs across instances: a once-per-tick lease and a checkpoint store.
//!
//! Every instance runs the same schedule; before running a job for a tick, each asks
//! [`PostgresLog::try_acquire_job`]. The `(job, tick)` primary key of `job_leases` lets
//! exactly one instance win, whatever the timing, with no lock held while the job runs.
//! A tick is the scheduled instant of one run, the same on every instance (see
//! `pulse_scheduler::JobLease`, which [`PostgresLog`] implements). The winner owns that
//! run; if it dies mid-run the tick is not retried by another instance: jobs are
//! incremental from their checkpoint, so the next tick picks up the work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pulse_core::LogError;
use pulse_scheduler::{JobLease, LeaseError};

use crate::error::{self, DbResult};
use crate::PostgresLog;

impl PostgresLog {
    /// Claims the run of `job` at `tick`: `true` for exactly one caller across every
    /// instance sharing the log, `false` for the others.
    pub async fn try_acquire_job(&self, job: &str, tick: DateTime<Utc>) -> Result<bool, LogError> {
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        let claimed = client
            .execute(
                "INSERT INTO job_leases (job, tick, holder) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&job, &tick, &self.shared.instance],
            )
            .await
            .db()?;
        Ok(claimed == 1)
    }

    /// The instance that claimed `job` at `tick`, if any.
    pub async fn job_holder(
        &self,
        job: &str,
        tick: DateTime<Utc>,
    ) -> Result<Option<String>, LogError> {
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        let row = client
            .query_opt(
                "SELECT holder FROM job_leases WHERE job = $1 AND tick = $2",
                &[&job, &tick],
            )
            .await
            .db()?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Forgets the leases of `job` before `tick`; returns how many were removed.
    pub async fn prune_job_leases(
        &self,
        job: &str,
        before_tick: DateTime<Utc>,
    ) -> Result<u64, LogError> {
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        client
            .execute(
                "DELETE FROM job_leases WHERE job = $1 AND tick < $2",
                &[&job, &before_tick],
            )
            .await
            .db()
    }

    /// The last checkpoint stored for `job`.
    pub async fn load_checkpoint(&self, job: &str) -> Result<Option<Vec<u8>>, LogError> {
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        let row = client
            .query_opt(
                "SELECT checkpoint FROM job_checkpoints WHERE job = $1",
                &[&job],
            )
            .await
            .db()?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores `checkpoint` as the latest of `job`, replacing the previous one.
    pub async fn store_checkpoint(&self, job: &str, checkpoint: &[u8]) -> Result<(), LogError> {
        let client = self.shared.pool.get().await.map_err(error::pool)?;
        client
            .execute(
                "INSERT INTO job_checkpoints (job, checkpoint, updated_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (job) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = now()",
                &[&job, &checkpoint],
            )
            .await
            .db()?;
        Ok(())
    }
}

#[async_trait]
impl JobLease for PostgresLog {
    async fn try_acquire(&self, job: &str, tick: DateTime<Utc>) -> Result<bool, LeaseError> {
        self.try_acquire_job(job, tick)
            .await
            .map_err(|e| LeaseError::Backend(Box::new(e)))
    }
}
