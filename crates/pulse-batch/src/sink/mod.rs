//! Where aggregates go: JSONL and CSV files ([`file`]), or a state store upserted by key
//! (a `sqlite:` output, opened through [`Databases`](crate::store::Databases)).

pub(crate) mod file;

use std::path::PathBuf;

use crate::error::BatchError;

/// An output given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// JSON objects, one per line.
    Jsonl(PathBuf),
    /// CSV with a header row.
    Csv(PathBuf),
    /// The `aggregates` table of a SQLite database, merged by key with what it holds (a
    /// [`StateStore`](crate::store::StateStore)).
    Sqlite(PathBuf),
}

impl Output {
    /// Parses `PATH.jsonl`, `PATH.csv` or `sqlite:PATH`.
    ///
    /// ```
    /// use pulse_batch::Output;
    /// assert!(matches!(Output::parse("out.jsonl"), Ok(Output::Jsonl(_))));
    /// assert!(matches!(Output::parse("sqlite:agg.db"), Ok(Output::Sqlite(_))));
    /// assert!(Output::parse("out.txt").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Output, BatchError> {
        if let Some(path) = spec.strip_prefix("sqlite:") {
            if path.is_empty() || path.contains('?') {
                return Err(BatchError::InvalidSpec(format!(
                    "output {spec:?}: expected sqlite:PATH"
                )));
            }
            return Ok(Output::Sqlite(PathBuf::from(path)));
        }
        let lower = spec.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Ok(Output::Jsonl(PathBuf::from(spec)))
        } else if lower.ends_with(".csv") {
            Ok(Output::Csv(PathBuf::from(spec)))
        } else {
            Err(BatchError::InvalidSpec(format!(
                "output {spec:?}: expected a .jsonl or .csv file or sqlite:PATH"
            )))
        }
    }
}
