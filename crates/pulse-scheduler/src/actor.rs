//! The task that owns every job's state: it sleeps until the next tick, decides what each tick
//! does (run, miss, coalesce), spawns runs, records how they end and answers the handle's
//! commands.
//!
//! One task and no locks: the [`Scheduler`](crate::Scheduler) handle only sends messages here,
//! so "is the job running?" and "start it" can never race. Runs execute in their own tasks (a
//! `JoinSet`), so a slow job never delays another job's tick; the actor only awaits the
//! history store, which is expected to be quick.

mod busy_tick;
mod entry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{Id as TaskId, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::busy_tick::BusyTick;
use self::entry::{JobEntry, Pending, Running};
use crate::clock::Clock;
use pulse_core::error_chain;

use crate::error::{SchedulerError, Superseded};
use crate::history::RunHistoryStore;
use crate::job::{validate_name, JobContext, JobOutcome, JobSpec, OverlapPolicy};
use crate::lease::JobLease;
use crate::metrics;
use crate::record::{RunRecord, RunStatus, RunTrigger};
use crate::schedule::format_duration;
use crate::scheduler::ShutdownReport;
use crate::status::JobStatus;

/// The longest the actor sleeps before re-reading the wall clock, so that a clock step (or a
/// suspended machine) is noticed within this time even if the next tick is hours away.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How long a run has, once its cancellation token fires at the shutdown deadline, to stop by
/// itself (and record its own error) before its task is aborted.
pub(crate) const ABORT_AFTER_CANCEL: Duration = Duration::from_secs(1);

/// How many ticks missed during one stall are counted in `coalesced` at most: a cron schedule
/// counts by stepping through its ticks (about a microsecond each, see `benches/schedule.rs`),
/// and the count must not hold the scheduler task for long after a days-long suspend.
const MAX_COUNTED_TICKS: u32 = 10_000;

/// A request from a [`Scheduler`](crate::Scheduler) handle.
pub(crate) enum Command {
    Add {
        spec: Box<JobSpec>,
        reply: oneshot::Sender<Result<(), SchedulerError>>,
    },
    Trigger {
        name: String,
        reply: oneshot::Sender<Result<RunRecord, SchedulerError>>,
    },
    Watch {
        name: String,
        reply: oneshot::Sender<Result<watch::Receiver<JobStatus>, SchedulerError>>,
    },
    Jobs {
        reply: oneshot::Sender<Vec<JobStatus>>,
    },
    Shutdown {
        grace: Duration,
        reply: oneshot::Sender<ShutdownReport>,
    },
}

/// How a run task ended (a panic or an abort shows up as a `JoinError` instead).
enum RunResult {
    Done(Result<JobOutcome, String>),
    Superseded(String),
    LeaseDenied,
    LeaseFailed(String),
}

/// Where a shutdown stands.
#[derive(Clone, Copy)]
enum Stage {
    /// Waiting for the runs to end until the deadline.
    Waiting { deadline: Instant },
    /// Tokens cancelled; the tasks are aborted at `abort_at`.
    Cancelled { abort_at: Instant },
    /// Tasks aborted; waiting for them to be reaped.
    Aborted,
}

/// The state of a shutdown in progress.
struct Draining {
    stage: Stage,
    replies: Vec<oneshot::Sender<ShutdownReport>>,
    report: ShutdownReport,
}

/// The scheduler task's state.
pub(crate) struct Actor {
    clock: Arc<dyn Clock>,
    lease: Arc<dyn JobLease>,
    history: Arc<dyn RunHistoryStore>,
    rng: fastrand::Rng,
    jobs: Vec<JobEntry>,
    by_name: HashMap<String, usize>,
    tasks: JoinSet<RunResult>,
    task_owner: HashMap<TaskId, usize>,
    busy_ticks: JoinSet<BusyTick>,
    next_run_id: u64,
    last_now: DateTime<Utc>,
    cancel_runs: CancellationToken,
    draining: Option<Draining>,
}

impl Actor {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        lease: Arc<dyn JobLease>,
        history: Arc<dyn RunHistoryStore>,
        rng: fastrand::Rng,
    ) -> Self {
        let last_now = clock.now();
        Self {
            clock,
            lease,
            history,
            rng,
            jobs: Vec::new(),
            by_name: HashMap::new(),
            tasks: JoinSet::new(),
            task_owner: HashMap::new(),
            busy_ticks: JoinSet::new(),
            next_run_id: 1,
            last_now,
            cancel_runs: CancellationToken::new(),
            draining: None,
        }
    }

    /// Runs until a shutdown completes (or every handle is gone and the runs are cancelled).
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut commands_open = true;
        loop {
            if self.draining.is_some() && self.tasks.is_empty() {
                self.finish_shutdown();
                return;
            }
            if !commands_open && self.draining.is_none() {
                debug!("every scheduler handle was dropped; stopping");
                self.begin_shutdown(Duration::ZERO, None);
                continue;
            }
            let wake = self.next_wake();
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.on_run_ended(joined).await;
                }
                Some(Ok(checked)) = self.busy_ticks.join_next(), if !self.busy_ticks.is_empty() => {
                    self.on_busy_tick_checked(checked).await;
                }
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.on_command(command).await,
                    None => commands_open = false,
                },
                () = tokio::time::sleep_until(wake) => self.on_wake().await,
            }
        }
    }

    /// When to wake next: the earliest due tick or the shutdown deadline, at most `MAX_SLEEP`.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let cap = now + MAX_SLEEP;
        if let Some(draining) = &self.draining {
            return match draining.stage {
                Stage::Waiting { deadline } => deadline.min(cap),
                Stage::Cancelled { abort_at } => abort_at.min(cap),
                Stage::Aborted => cap,
            };
        }
        let wall = self.clock.now();
        self.jobs
            .iter()
            .filter_map(|job| job.next_fire)
            .min()
            .map_or(cap, |fire| {
                let delay = (fire - wall).to_std().unwrap_or(Duration::ZERO);
                now + delay.min(MAX_SLEEP)
            })
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Add { spec, reply } => {
                let result = self.add(*spec);
                let _ = reply.send(result);
            }
            Command::Trigger { name, reply } => self.trigger(name, reply),
            Command::Watch { name, reply } => {
                let result = match self.by_name.get(&name) {
                    Some(&idx) => Ok(self.jobs[idx].subscribe()),
                    None => Err(SchedulerError::UnknownJob(name)),
                };
                let _ = reply.send(result);
            }
            Command::Jobs { reply } => {
                let _ = reply.send(self.jobs.iter().map(JobEntry::snapshot).collect());
            }
            Command::Shutdown { grace, reply } => self.begin_shutdown(grace, Some(reply)),
        }
    }

    fn add(&mut self, spec: JobSpec) -> Result<(), SchedulerError> {
        if self.draining.is_some() {
            return Err(SchedulerError::ShuttingDown);
        }
        validate_name(&spec.name).map_err(|reason| SchedulerError::InvalidJobName {
            name: spec.name.clone(),
            reason,
        })?;
        if self.by_name.contains_key(&spec.name) {
            return Err(SchedulerError::DuplicateJob(spec.name));
        }
        metrics::register_job(&spec.name);
        let now = self.clock.now();
        let mut entry = JobEntry::new(spec);
        entry.plan_after(now, &mut self.rng);
        info!(job = %entry.name, schedule = %entry.spec.schedule, next_run = ?entry.next_fire, "job added");
        entry.publish();
        self.by_name
            .insert(entry.spec.name.clone(), self.jobs.len());
        self.jobs.push(entry);
        Ok(())
    }

    fn trigger(&mut self, name: String, reply: oneshot::Sender<Result<RunRecord, SchedulerError>>) {
        let Some(&idx) = self.by_name.get(&name) else {
            let _ = reply.send(Err(SchedulerError::UnknownJob(name)));
            return;
        };
        if self.draining.is_some() {
            let _ = reply.send(Err(SchedulerError::ShuttingDown));
            return;
        }
        if self.jobs[idx].running.is_some() {
            let _ = reply.send(Err(SchedulerError::AlreadyRunning(name)));
            return;
        }
        self.start_run(idx, RunTrigger::Manual, None, 0, Some(reply));
    }

    async fn on_wake(&mut self) {
        if let Some(draining) = &self.draining {
            match draining.stage {
                Stage::Waiting { deadline } if Instant::now() >= deadline => self.cancel_runs(),
                Stage::Cancelled { abort_at } if Instant::now() >= abort_at => self.abort_runs(),
                _ => {}
            }
            return;
        }
        let now = self.clock.now();
        if now + chrono::Duration::seconds(1) < self.last_now {
            // The wall clock stepped back: re-plan from the new "now" instead of waiting for the
            // clock to catch up with ticks planned before the step.
            warn!(from = %self.last_now, to = %now, "wall clock went backwards; re-planning ticks");
            for entry in &mut self.jobs {
                entry.plan_after(now, &mut self.rng);
                entry.publish();
            }
        }
        self.last_now = now;
        for idx in 0..self.jobs.len() {
            if self.jobs[idx].next_fire.is_some_and(|fire| fire <= now) {
                self.on_due(idx, now).await;
            }
        }
    }

    /// Handles a job whose next tick is due: finds the latest tick not after `now` (a stall may
    /// have let several pass — they coalesce into one), plans the next one, and dispatches.
    async fn on_due(&mut self, idx: usize, now: DateTime<Utc>) {
        let entry = &mut self.jobs[idx];
        let (Some(first), Some(fire)) = (entry.next_tick, entry.next_fire) else {
            return;
        };
        let schedule = &entry.spec.schedule;
        let latest = schedule
            .latest_at_or_before(now)
            .filter(|latest| *latest > first)
            .unwrap_or(first);
        let coalesced = schedule.count_between(first, latest, MAX_COUNTED_TICKS);
        // Only the planned tick was jittered; a tick found late after a stall is judged from
        // its own time.
        let intended = if latest == first { fire } else { latest };
        entry.plan_after(now, &mut self.rng);
        if coalesced > 0 {
            warn!(job = %entry.name, coalesced, tick = %latest, "ticks passed while the scheduler stalled; coalescing them");
        }
        if entry.running.is_none() {
            self.start_or_miss(idx, latest, intended, coalesced, now)
                .await;
            return;
        }
        match entry.spec.overlap {
            OverlapPolicy::Coalesce => {
                let coalesced = match entry.pending.take() {
                    Some(older) => older.coalesced.saturating_add(1).saturating_add(coalesced),
                    None => coalesced,
                };
                entry.pending = Some(Pending {
                    tick: latest,
                    intended,
                    coalesced,
                });
                debug!(job = %entry.name, tick = %latest, "tick arrived during a run; it will run next");
                entry.publish();
            }
            _ if self.lease.is_shared() => {
                debug!(job = %entry.name, tick = %latest, "busy: leaving the tick to the other instances");
                self.busy_ticks.spawn(BusyTick::check(
                    Arc::clone(&self.lease),
                    Arc::clone(&entry.name),
                    idx,
                    latest,
                    coalesced,
                    entry.spec.misfire_grace,
                ));
            }
            _ => {
                let reason = "previous run still running".to_owned();
                self.record_missed(idx, latest, coalesced, reason, now)
                    .await;
            }
        }
    }

    /// Records a tick this busy instance left to the others as missed, unless one of them
    /// took it.
    async fn on_busy_tick_checked(&mut self, checked: BusyTick) {
        match checked.missed_because() {
            Some(reason) => {
                let now = self.clock.now();
                self.record_missed(checked.idx, checked.tick, checked.coalesced, reason, now)
                    .await;
            }
            None => {
                debug!(job = %self.jobs[checked.idx].name, tick = %checked.tick, "another instance ran the tick");
            }
        }
    }

    /// Starts a scheduled run for `tick`, or records it missed if it is past its grace.
    async fn start_or_miss(
        &mut self,
        idx: usize,
        tick: DateTime<Utc>,
        intended: DateTime<Utc>,
        coalesced: u32,
        now: DateTime<Utc>,
    ) {
        let grace = self.jobs[idx].spec.misfire_grace;
        let late = (now - intended).to_std().unwrap_or(Duration::ZERO);
        if late > grace {
            let reason = format!(
                "not started within the misfire grace of {} (late by {})",
                format_duration(grace),
                format_duration(late)
            );
            self.record_missed(idx, tick, coalesced, reason, now).await;
        } else {
            self.start_run(idx, RunTrigger::Scheduled, Some(tick), coalesced, None);
        }
    }

    fn start_run(
        &mut self,
        idx: usize,
        trigger: RunTrigger,
        tick: Option<DateTime<Utc>>,
        coalesced: u32,
        waiter: Option<oneshot::Sender<Result<RunRecord, SchedulerError>>>,
    ) {
        let run_id = self.take_run_id();
        let cancel = self.cancel_runs.child_token();
        let entry = &mut self.jobs[idx];
        let ctx = JobContext {
            job: Arc::clone(&entry.name),
            run_id,
            trigger,
            scheduled_at: tick,
            cancel: cancel.clone(),
        };
        let job = Arc::clone(&entry.spec.job);
        let lease = Arc::clone(&self.lease);
        let name = Arc::clone(&entry.name);
        let abort = self.tasks.spawn(async move {
            if let (RunTrigger::Scheduled, Some(tick)) = (trigger, tick) {
                match lease.try_acquire(&name, tick).await {
                    Ok(true) => {}
                    Ok(false) => return RunResult::LeaseDenied,
                    Err(err) => return RunResult::LeaseFailed(error_chain(&err)),
                }
            }
            match job.run(ctx).await {
                Ok(outcome) => RunResult::Done(Ok(outcome)),
                Err(err) => match err.downcast_ref::<Superseded>() {
                    Some(Superseded(why)) => RunResult::Superseded(why.clone()),
                    None => RunResult::Done(Err(error_chain(err.as_ref()))),
                },
            }
        });
        self.task_owner.insert(abort.id(), idx);
        debug!(job = %entry.name, run_id, ?trigger, "run started");
        entry.running = Some(Running {
            run_id,
            trigger,
            scheduled_at: tick,
            started_at: self.clock.now(),
            started: Instant::now(),
            coalesced,
            waiters: waiter.into_iter().collect(),
            abort,
            cancelled_by_shutdown: false,
        });
        entry.publish();
    }

    async fn on_run_ended(&mut self, joined: Result<(TaskId, RunResult), JoinError>) {
        let task = match &joined {
            Ok((id, _)) => *id,
            Err(err) => err.id(),
        };
        let Some(idx) = self.task_owner.remove(&task) else {
            return;
        };
        let Some(running) = self.jobs[idx].running.take() else {
            return;
        };
        let elapsed = running.started.elapsed().as_secs_f64();
        let (status, outcome, error) = match joined {
            Ok((_, RunResult::Done(Ok(outcome)))) => (RunStatus::Ok, outcome, None),
            Ok((_, RunResult::Done(Err(text)))) => {
                (RunStatus::Failed, JobOutcome::default(), Some(text))
            }
            Ok((_, RunResult::Superseded(why))) => {
                (RunStatus::Superseded, JobOutcome::default(), Some(why))
            }
            Ok((_, RunResult::LeaseDenied)) => {
                debug!(job = %self.jobs[idx].name, tick = ?running.scheduled_at, "another instance holds this tick");
                self.after_run(idx).await;
                return;
            }
            Ok((_, RunResult::LeaseFailed(text))) => (
                RunStatus::Failed,
                JobOutcome::default(),
                Some(format!("could not acquire the job lease: {text}")),
            ),
            Err(err) if err.is_panic() => (
                RunStatus::Failed,
                JobOutcome::default(),
                Some(format!("job panicked: {}", panic_message(err))),
            ),
            Err(_) => (
                RunStatus::Failed,
                JobOutcome::default(),
                Some("cancelled: the scheduler shut down before the run finished".to_owned()),
            ),
        };
        let record = RunRecord {
            job: self.jobs[idx].spec.name.clone(),
            run_id: running.run_id,
            trigger: running.trigger,
            scheduled_at: running.scheduled_at,
            started_at: running.started_at,
            finished_at: self.clock.now().max(running.started_at),
            status,
            rows_read: outcome.rows_read,
            rejected: outcome.rejected,
            windows_written: outcome.windows_written,
            error,
            coalesced: running.coalesced,
        };
        if let Some(draining) = &mut self.draining {
            let list = if running.cancelled_by_shutdown {
                &mut draining.report.cancelled
            } else {
                &mut draining.report.finished
            };
            list.push(record.job.clone());
        }
        self.finish_record(idx, &record, elapsed).await;
        for waiter in running.waiters {
            let _ = waiter.send(Ok(record.clone()));
        }
        self.after_run(idx).await;
    }

    /// After a run ends: starts the tick that waited for it, if any.
    async fn after_run(&mut self, idx: usize) {
        let pending = self.jobs[idx].pending.take();
        match pending {
            Some(pending) if self.draining.is_none() => {
                let now = self.clock.now();
                self.start_or_miss(idx, pending.tick, pending.intended, pending.coalesced, now)
                    .await;
            }
            _ => self.jobs[idx].publish(),
        }
    }

    async fn record_missed(
        &mut self,
        idx: usize,
        tick: DateTime<Utc>,
        coalesced: u32,
        reason: String,
        now: DateTime<Utc>,
    ) {
        let record = RunRecord {
            job: self.jobs[idx].spec.name.clone(),
            run_id: self.take_run_id(),
            trigger: RunTrigger::Scheduled,
            scheduled_at: Some(tick),
            started_at: now,
            finished_at: now,
            status: RunStatus::Missed,
            rows_read: 0,
            rejected: 0,
            windows_written: 0,
            error: Some(reason),
            coalesced,
        };
        self.finish_record(idx, &record, 0.0).await;
    }

    /// Counts, logs, stores and publishes a history entry.
    async fn finish_record(&mut self, idx: usize, record: &RunRecord, elapsed_seconds: f64) {
        match record.status {
            RunStatus::Ok => info!(
                job = %record.job,
                run_id = record.run_id,
                rows_read = record.rows_read,
                rejected = record.rejected,
                windows_written = record.windows_written,
                elapsed_seconds,
                "job run finished"
            ),
            RunStatus::Failed => warn!(
                job = %record.job,
                run_id = record.run_id,
                error = record.error.as_deref().unwrap_or_default(),
                elapsed_seconds,
                "job run failed"
            ),
            _ => warn!(
                job = %record.job,
                tick = ?record.scheduled_at,
                reason = record.error.as_deref().unwrap_or_default(),
                "job tick missed"
            ),
        }
        metrics::record_run(record, elapsed_seconds);
        if let Err(err) = self.history.append(record).await {
            warn!(job = %record.job, %err, "could not store the run in the history");
        }
        let entry = &mut self.jobs[idx];
        entry.count(record);
        entry.publish();
    }

    fn begin_shutdown(&mut self, grace: Duration, reply: Option<oneshot::Sender<ShutdownReport>>) {
        if let Some(draining) = &mut self.draining {
            draining.replies.extend(reply);
            return;
        }
        let running = self.tasks.len();
        info!(running, grace = %format_duration(grace), "scheduler shutting down");
        self.draining = Some(Draining {
            stage: Stage::Waiting {
                deadline: Instant::now() + grace,
            },
            replies: reply.into_iter().collect(),
            report: ShutdownReport::default(),
        });
        for entry in &mut self.jobs {
            entry.stop_planning();
            entry.publish();
        }
        if grace.is_zero() {
            self.cancel_runs();
        }
    }

    /// The deadline passed: cancels every run still going; those that do not stop by
    /// themselves within [`ABORT_AFTER_CANCEL`] are aborted.
    fn cancel_runs(&mut self) {
        if let Some(draining) = &mut self.draining {
            draining.stage = Stage::Cancelled {
                abort_at: Instant::now() + ABORT_AFTER_CANCEL,
            };
        }
        self.cancel_runs.cancel();
        for entry in &mut self.jobs {
            if let Some(running) = &mut entry.running {
                warn!(job = %entry.name, run_id = running.run_id, "cancelling the run at the shutdown deadline");
                running.cancelled_by_shutdown = true;
            }
        }
    }

    /// Drops the futures of the runs that ignored their cancellation.
    fn abort_runs(&mut self) {
        if let Some(draining) = &mut self.draining {
            draining.stage = Stage::Aborted;
        }
        for entry in &self.jobs {
            if let Some(running) = &entry.running {
                warn!(job = %entry.name, run_id = running.run_id, "aborting a run that did not stop when cancelled");
                running.abort.abort();
            }
        }
    }

    fn finish_shutdown(&mut self) {
        if let Some(draining) = self.draining.take() {
            info!(
                finished = draining.report.finished.len(),
                cancelled = draining.report.cancelled.len(),
                "scheduler stopped"
            );
            for reply in draining.replies {
                let _ = reply.send(draining.report.clone());
            }
        }
    }

    fn take_run_id(&mut self) -> u64 {
        let id = self.next_run_id;
        self.next_run_id += 1;
        id
    }
}

/// The message a panicking job gave, when it gave text.
fn panic_message(err: JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic payload".to_owned()),
        Err(_) => "unknown panic".to_owned(),
    }
}
