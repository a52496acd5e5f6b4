//! The scheduler's metrics, declared once: names, descriptions and where they are recorded.
//!
//! Labels are bounded: `job` is an operator-configured name, `status` one of four values.

use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};

use crate::record::{RunRecord, RunStatus};

/// Runs by job and status (`ok`, `failed`, `missed`, `superseded`).
pub const JOB_RUNS_TOTAL: &str = "pulse_job_runs_total";
/// Duration of runs that executed (`ok` or `failed`), by job.
pub const JOB_DURATION_SECONDS: &str = "pulse_job_duration_seconds";

/// Registers the descriptions of the scheduler's metrics with the installed recorder (call once
/// after installing the exporter, so `/metrics` has HELP lines before the first run).
pub fn describe() {
    describe_counter!(
        JOB_RUNS_TOTAL,
        Unit::Count,
        "Scheduled and manual job runs by job and status (ok, failed, missed, superseded)"
    );
    describe_histogram!(
        JOB_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of job runs that executed, by job"
    );
}

/// Registers a job's series at zero (every status, and the duration), so that its first
/// failure is an increase `increase()` can see and an idle job still shows on a dashboard.
/// Called when the job is added.
pub(crate) fn register_job(job: &str) {
    for status in RunStatus::ALL {
        let _ = counter!(JOB_RUNS_TOTAL, "job" => job.to_owned(), "status" => status.as_str());
    }
    let _ = histogram!(JOB_DURATION_SECONDS, "job" => job.to_owned());
}

/// Counts a finished run and, if it executed, its duration.
pub(crate) fn record_run(record: &RunRecord, elapsed_seconds: f64) {
    counter!(JOB_RUNS_TOTAL, "job" => record.job.clone(), "status" => record.status.as_str())
        .increment(1);
    if record.status != RunStatus::Missed {
        histogram!(JOB_DURATION_SECONDS, "job" => record.job.clone()).record(elapsed_seconds);
    }
}
