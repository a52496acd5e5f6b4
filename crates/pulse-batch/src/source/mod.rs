//! Where readings come from: CSV and JSONL files, the Pulse event log, and tables of
//! databases this crate does not link ([`TableSource`]: SQLite through
//! [`Databases`](crate::store::Databases), PostgreSQL wired in by the `pulse` binary).
//!
//! Every source turns its rows into [`RawReading`](crate::reading::RawReading)s and feeds
//! an [`Aggregator`](crate::aggregator::Aggregator); each one also knows its position, so
//! an incremental run can resume after what it already consumed.

pub(crate) mod csv;
pub(crate) mod file;
pub(crate) mod json;
pub(crate) mod jsonl;
pub(crate) mod log;
mod table_source;

use std::path::PathBuf;

pub use file::{FileFormat, FilePosition};
pub use table_source::{ExternalTable, TableSource};

use crate::error::BatchError;

/// An input given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A CSV file with a header row.
    Csv(PathBuf),
    /// A file of JSON objects, one per line.
    Jsonl(PathBuf),
    /// A table of a SQLite database (opened through [`Databases`](crate::store::Databases)).
    Table {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: String,
    },
    /// A table read through a [`TableSource`] (built by the caller, not by [`Input::parse`]).
    External(ExternalTable),
}

impl Input {
    /// Parses `PATH.csv`, `PATH.jsonl` (or `.ndjson`) or `sqlite:PATH?table=NAME`.
    ///
    /// ```
    /// use pulse_batch::Input;
    /// assert!(matches!(Input::parse("r.csv"), Ok(Input::Csv(_))));
    /// assert!(matches!(Input::parse("sqlite:db.sqlite?table=readings"), Ok(Input::Table { .. })));
    /// assert!(Input::parse("r.parquet").is_err());
    /// assert!(Input::parse("sqlite:db.sqlite?table=x;drop").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<Input, BatchError> {
        if let Some(rest) = spec.strip_prefix("sqlite:") {
            let (path, query) = rest.split_once('?').ok_or_else(|| {
                BatchError::InvalidSpec(format!("{spec:?}: expected sqlite:PATH?table=NAME"))
            })?;
            let table = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("table="))
                .ok_or_else(|| {
                    BatchError::InvalidSpec(format!("{spec:?}: expected sqlite:PATH?table=NAME"))
                })?;
            if path.is_empty() {
                return Err(BatchError::InvalidSpec(format!(
                    "{spec:?}: the database path is empty"
                )));
            }
            validate_table_name(table)?;
            return Ok(Input::Table {
                path: PathBuf::from(path),
                table: table.to_owned(),
            });
        }
        let lower = spec.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Ok(Input::Csv(PathBuf::from(spec)))
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Ok(Input::Jsonl(PathBuf::from(spec)))
        } else {
            Err(BatchError::InvalidSpec(format!(
                "input {spec:?}: expected a .csv or .jsonl file or sqlite:PATH?table=NAME"
            )))
        }
    }

    /// A stable identity for checkpoints: the absolute path (and table).
    pub fn source_id(&self) -> String {
        let abs = |p: &PathBuf| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        };
        match self {
            Input::Csv(p) | Input::Jsonl(p) => format!("file:{}", abs(p)),
            Input::Table { path, table } => format!("sqlite:{}?table={table}", abs(path)),
            Input::External(source) => source.source_id(),
        }
    }
}

/// Checks a table name: `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters (it is spliced
/// into SQL, so nothing else is allowed).
pub fn validate_table_name(name: &str) -> Result<(), BatchError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BatchError::InvalidSpec(format!(
            "table name {name:?}: expected letters, digits and _"
        )))
    }
}
