//! Helpers shared by the aggregation tests: building readings, running jobs (with SQLite
//! to open `sqlite:` specs), reading outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pulse_batch::Input;
use pulse_batch::Output;
use pulse_batch::Progress;
use pulse_batch::WindowSet;
use pulse_batch::{Job, Summary};

/// One reading as a CSV line (user_id,metric,value,unit,recorded_at).
pub(crate) fn csv_line(user: &str, metric: &str, value: &str, unit: &str, at: &str) -> String {
    format!("{user},{metric},{value},{unit},{at}\n")
}

pub(crate) const HEADER: &str = "user_id,metric,value,unit,recorded_at\n";

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub(crate) fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("append: {e}"));
}

pub(crate) fn job(input: &str, windows: &str, tz: &str, output: &str) -> Job {
    let input = Input::parse(input).unwrap_or_else(|e| panic!("{e}"));
    let output = Output::parse(output).unwrap_or_else(|e| panic!("{e}"));
    let windows = WindowSet::parse(windows, tz).unwrap_or_else(|e| panic!("{e}"));
    Job::new(input, windows, output).with_databases(Arc::new(pulse_sqlite::batch::Sqlite))
}

pub(crate) fn run(job: &Job) -> Summary {
    pulse_batch::run(job, &Progress::new()).unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// Output rows of a JSONL file.
pub(crate) fn rows(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad row {l}: {e}")))
        .collect()
}

pub(crate) fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

pub(crate) fn s(p: &Path) -> String {
    p.display().to_string()
}

pub(crate) fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}
