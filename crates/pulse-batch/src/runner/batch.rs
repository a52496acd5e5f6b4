//! [`run`]: one `pulse aggregate` run. Read the input (all of it, or what is new since
//! the checkpoint), aggregate, then write the output — through the state store when the
//! run is incremental, so that the aggregates and the checkpoint commit together.
//!
//! Without a state store (a file in, a file out) the run is a pure function of the input
//! and takes the fast path: parallel read, one sort, one write. With one (`--state` or a
//! `sqlite:` output) the run merges its new states into the stored ones; an output file is
//! then rewritten from the store, so it always shows every window, not just the new ones.
//! SQLite tables and stores are opened through the job's [`Databases`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::Summary;
use crate::aggregator::{Aggregator, Counts};
use crate::error::BatchError;
use crate::progress::Progress;
use crate::rejects::RejectLog;
use crate::sink::file::{FileKind, RowFile};
use crate::sink::Output;
use crate::source::file::{self, FileFormat, FileJob, FilePosition};
use crate::source::{Input, TableSource};
use crate::store::{Commit, Cursor, Databases, StateStore};
use crate::table::{AggTable, Merged};
use crate::window::WindowSet;

/// What to aggregate, how, and where to.
#[derive(Clone, Debug)]
pub struct Job {
    /// The readings.
    pub input: Input,
    /// The windows and time zone.
    pub windows: Arc<WindowSet>,
    /// Where the aggregates go.
    pub output: Output,
    /// The incremental state store (implied by a `sqlite:` output).
    pub state: Option<PathBuf>,
    /// Where rejected readings are written.
    pub rejects: Option<PathBuf>,
    /// Recompute from scratch, discarding stored state.
    pub full: bool,
    /// Worker threads for file inputs.
    pub threads: usize,
    /// Opens SQLite tables and state stores (`None`: a job that names one fails).
    pub databases: Option<Arc<dyn Databases>>,
}

impl Job {
    /// A job with default threads (the machine's parallelism) and no state or rejects file.
    pub fn new(input: Input, windows: WindowSet, output: Output) -> Job {
        Job {
            input,
            windows: Arc::new(windows),
            output,
            state: None,
            rejects: None,
            full: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            databases: None,
        }
    }

    /// The job with `databases` to open the SQLite files it names.
    pub fn with_databases(mut self, databases: Arc<dyn Databases>) -> Job {
        self.databases = Some(databases);
        self
    }

    fn databases(&self) -> Result<&dyn Databases, BatchError> {
        self.databases.as_deref().ok_or_else(|| {
            BatchError::InvalidSpec(
                "this job names a SQLite database, and none can be opened here".into(),
            )
        })
    }

    fn store_path(&self) -> Result<Option<PathBuf>, BatchError> {
        match (&self.output, &self.state) {
            (Output::Sqlite(out), Some(state)) if !same_file(out, state) => Err(BatchError::InvalidSpec(
                "with a sqlite: output the state lives in the output database; drop --state or give the same file".into(),
            )),
            (Output::Sqlite(out), _) => Ok(Some(out.clone())),
            (_, state) => Ok(state.clone()),
        }
    }
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    abs(a) == abs(b)
}

/// Where to resume and where this run stops.
enum Plan {
    File {
        start: u64,
        end: u64,
        rows_before: u64,
    },
    Table {
        after: i64,
    },
}

fn file_parts(input: &Input) -> Option<(&PathBuf, FileFormat)> {
    match input {
        Input::Csv(p) => Some((p, FileFormat::Csv)),
        Input::Jsonl(p) => Some((p, FileFormat::Jsonl)),
        Input::Table { .. } | Input::External(_) => None,
    }
}

fn plan(job: &Job, checkpoint: Option<&Cursor>, incremental: bool) -> Result<Plan, BatchError> {
    let changed = |reason: &str| BatchError::InputChanged {
        path: job.input.source_id(),
        reason: reason.to_owned(),
    };
    if let Some((path, _)) = file_parts(&job.input) {
        let len = std::fs::metadata(path)
            .map_err(|e| BatchError::io("cannot read", path, e))?
            .len();
        let end = if incremental {
            file::last_line_end(path, len)?
        } else {
            len
        };
        let pos = match checkpoint {
            None => {
                return Ok(Plan::File {
                    start: 0,
                    end,
                    rows_before: 0,
                })
            }
            Some(Cursor::File(pos)) => pos,
            Some(Cursor::Offset(_)) => return Err(changed("the stored position is not readable")),
        };
        if pos.offset > len {
            return Err(changed("it is shorter than what was already consumed"));
        }
        if file::fingerprint(path, pos.offset)? != pos.fingerprint {
            return Err(changed("the part already consumed is different"));
        }
        return Ok(Plan::File {
            start: pos.offset,
            end: end.max(pos.offset),
            rows_before: pos.rows,
        });
    }
    let after = match checkpoint {
        Some(Cursor::Offset(n)) => {
            i64::try_from(*n).map_err(|_| changed("the stored position is not readable"))?
        }
        Some(Cursor::File(_)) => return Err(changed("the stored position is not readable")),
        None => 0,
    };
    Ok(Plan::Table { after })
}

/// Reads what the plan says; returns the states, the counts and the new position.
fn read(
    job: &Job,
    plan: &Plan,
    rejects: &RejectLog,
    progress: &Progress,
) -> Result<(Merged, Counts, Cursor), BatchError> {
    match (plan, &job.input) {
        (
            Plan::File {
                start,
                end,
                rows_before,
            },
            input,
        ) => {
            let Some((path, format)) = file_parts(input) else {
                return Err(BatchError::InvalidSpec(
                    "a file plan for a table input".into(),
                ));
            };
            progress.set_total_bytes(end.saturating_sub(*start));
            let (tables, counts) = file::aggregate(&FileJob {
                path,
                format,
                start: *start,
                end: *end,
                threads: job.threads,
                windows: &job.windows,
                rejects,
                progress,
            })?;
            let position = Cursor::File(FilePosition {
                offset: *end,
                rows: rows_before + counts.rows,
                fingerprint: file::fingerprint(path, *end)?,
            });
            Ok((
                Merged::new(Arc::clone(&job.windows), tables),
                counts,
                position,
            ))
        }
        (Plan::Table { after }, Input::Table { path, table }) => {
            let source = job.databases()?.open_table(path, table)?;
            read_table(job, &*source, *after, rejects, progress)
        }
        (Plan::Table { after }, Input::External(source)) => {
            read_table(job, &**source, *after, rejects, progress)
        }
        (Plan::Table { .. }, _) => Err(BatchError::InvalidSpec(
            "a table plan for a file input".into(),
        )),
    }
}

fn read_table(
    job: &Job,
    source: &dyn TableSource,
    after: i64,
    rejects: &RejectLog,
    progress: &Progress,
) -> Result<(Merged, Counts, Cursor), BatchError> {
    let mut agg = Aggregator::new(AggTable::new(Arc::clone(&job.windows)), rejects);
    let last = source.aggregate(after, &mut agg, progress)?;
    let last = u64::try_from(last).map_err(|_| BatchError::InvalidInput {
        path: job.input.source_id(),
        reason: format!("row id {last} is negative"),
    })?;
    let rows = Merged::new(Arc::clone(&job.windows), vec![agg.table]);
    Ok((rows, agg.counts, Cursor::Offset(last)))
}

fn write_file(
    path: &std::path::Path,
    kind: FileKind,
    rows: &Merged,
    threads: usize,
) -> Result<u64, BatchError> {
    let mut out = RowFile::create(path, kind)?;
    out.write_merged(rows, threads)?;
    out.finish()
}

fn export(
    store: &dyn StateStore,
    path: &std::path::Path,
    kind: FileKind,
) -> Result<u64, BatchError> {
    let mut out = RowFile::create(path, kind)?;
    store.for_each_row(&mut |row| out.write(row))?;
    out.finish()
}

/// Runs the job. Nothing is committed or replaced unless the whole run succeeds.
pub fn run(job: &Job, progress: &Progress) -> Result<Summary, BatchError> {
    let started = Instant::now();
    let rejects = match &job.rejects {
        Some(path) => RejectLog::create(path)?,
        None => RejectLog::none(),
    };
    let mut summary = Summary::default();
    match job.store_path()? {
        None => {
            let plan = plan(job, None, false)?;
            let (rows, counts, _) = read(job, &plan, &rejects, progress)?;
            rejects.finish()?;
            summary.windows_written = match &job.output {
                Output::Jsonl(path) => write_file(path, FileKind::Jsonl, &rows, job.threads)?,
                Output::Csv(path) => write_file(path, FileKind::Csv, &rows, job.threads)?,
                Output::Sqlite(_) => 0,
            };
            summary.keys_updated = summary.windows_written;
            summary.counts = counts;
        }
        Some(store_path) => {
            let mut store = job.databases()?.open_state(&store_path)?;
            if !job.full {
                store.check_windows(&job.windows)?;
            }
            let source = job.input.source_id();
            let checkpoint = if job.full {
                None
            } else {
                store.checkpoint(&source)?
            };
            let plan = plan(job, checkpoint.as_ref(), true)?;
            let (delta, counts, position) = read(job, &plan, &rejects, progress)?;
            rejects.finish()?;
            // A run with no new data changes nothing: no transaction at all.
            if counts.rows > 0 || job.full || checkpoint.as_ref() != Some(&position) {
                let commit = Commit {
                    source: &source,
                    from: checkpoint.as_ref(),
                    to: &position,
                    reset: job.full,
                };
                summary.keys_updated = store.commit(&delta, commit)?;
            }
            summary.windows_written = match &job.output {
                Output::Jsonl(path) => export(&*store, path, FileKind::Jsonl)?,
                Output::Csv(path) => export(&*store, path, FileKind::Csv)?,
                Output::Sqlite(_) => summary.keys_updated,
            };
            summary.counts = counts;
        }
    }
    Ok(super::finish(summary, started))
}
