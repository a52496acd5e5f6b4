//! One entry of a job's run history: a finished run, a failed one, a tick that was missed, or
//! a run whose work another run did first.
//!
//! Records serialize to the JSON shape `GET /v1/jobs` shows (`started_at`, `finished_at`,
//! `rows_read`, `rejected`, `windows_written`, `status`, `error`, ...).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// The job returned an outcome.
    Ok,
    /// The job returned an error, panicked, was cancelled at shutdown, or its lease could not
    /// be checked.
    Failed,
    /// The tick did not run: it could not start within the misfire grace, or (with
    /// [`OverlapPolicy::Skip`](crate::OverlapPolicy::Skip)) the previous run was still going.
    Missed,
    /// The run found its work already done by another run (on another instance) and left
    /// it as it was: the job returned [`Superseded`](crate::Superseded). Nothing is lost; the
    /// next run takes up whatever is left.
    Superseded,
}

impl RunStatus {
    /// Every status, in the order of the enum.
    pub const ALL: [RunStatus; 4] = [Self::Ok, Self::Failed, Self::Missed, Self::Superseded];

    /// The status as written in metrics and JSON: `ok`, `failed`, `missed` or `superseded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Missed => "missed",
            Self::Superseded => "superseded",
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunTrigger {
    /// A tick of the job's schedule.
    Scheduled,
    /// A run-now request ([`Scheduler::trigger`](crate::Scheduler::trigger)).
    Manual,
}

/// One entry of a job's run history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The job's name.
    pub job: String,
    /// The run's id, unique within one scheduler and increasing (missed ticks get one too).
    pub run_id: u64,
    /// What started the run.
    pub trigger: RunTrigger,
    /// The tick this run served (`None` for a manual run).
    pub scheduled_at: Option<DateTime<Utc>>,
    /// When the run started (for a missed tick: when it was found missed).
    pub started_at: DateTime<Utc>,
    /// When the run ended (for a missed tick: the same as `started_at`).
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub status: RunStatus,
    /// Input rows read (0 unless `ok`).
    pub rows_read: u64,
    /// Rows rejected (0 unless `ok`).
    pub rejected: u64,
    /// Aggregate windows written (0 unless `ok`).
    pub windows_written: u64,
    /// Why the run failed or was missed (`None` when `ok`).
    pub error: Option<String>,
    /// Earlier ticks folded into this one (after a stall, or ticks that arrived while a
    /// coalescing job was running): the run — or the miss — stands for `1 + coalesced` ticks
    /// (a stall's ticks are counted up to 10,000).
    pub coalesced: u32,
}

impl RunRecord {
    /// How long the run took (zero for a missed tick).
    pub fn duration(&self) -> chrono::Duration {
        self.finished_at - self.started_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_api_shows_it() {
        let at: DateTime<Utc> = "2026-01-01T00:05:00Z".parse().unwrap();
        let record = RunRecord {
            job: "agg".to_owned(),
            run_id: 7,
            trigger: RunTrigger::Scheduled,
            scheduled_at: Some(at),
            started_at: at,
            finished_at: at + chrono::Duration::seconds(2),
            status: RunStatus::Failed,
            rows_read: 0,
            rejected: 0,
            windows_written: 0,
            error: Some("disk full".to_owned()),
            coalesced: 0,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["status"], "failed");
        assert_eq!(json["trigger"], "scheduled");
        assert_eq!(json["started_at"], "2026-01-01T00:05:00Z");
        assert_eq!(json["error"], "disk full");
        let back: RunRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(record.duration(), chrono::Duration::seconds(2));
    }
}
