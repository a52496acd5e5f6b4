//! Readings from a SQLite table with columns `user_id, metric, value, recorded_at` and
//! optionally `unit`, read in rowid order. The position is the largest rowid consumed, so
//! an incremental run reads only rows inserted since (tables are expected to be
//! append-only; updating an old row is not seen).

use std::path::{Path, PathBuf};

use pulse_batch::Aggregator;
use pulse_batch::BatchError;
use pulse_batch::Position;
use pulse_batch::Progress;
use pulse_batch::{validate_table_name, Input, TableSource};
use pulse_batch::{RawReading, RawValue};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

const PROGRESS_EVERY: u64 = 16 * 1024;

/// A readings table of a SQLite database (`sqlite:PATH?table=NAME`).
#[derive(Clone, Debug)]
pub struct SqliteTable {
    path: PathBuf,
    table: String,
}

impl SqliteTable {
    /// The table `table` of the database at `path` (checked when read, not here).
    pub fn new(path: &Path, table: &str) -> Result<Self, BatchError> {
        validate_table_name(table)?;
        Ok(Self {
            path: path.to_owned(),
            table: table.to_owned(),
        })
    }
}

impl TableSource for SqliteTable {
    fn source_id(&self) -> String {
        Input::Table {
            path: self.path.clone(),
            table: self.table.clone(),
        }
        .source_id()
    }

    fn aggregate(
        &self,
        after: i64,
        agg: &mut Aggregator<'_>,
        progress: &Progress,
    ) -> Result<i64, BatchError> {
        aggregate_table(&self.path, &self.table, after, agg, progress)
    }
}

/// A column as text (integer user ids are common); borrowed when it already is text.
fn text(value: ValueRef<'_>) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    match value {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(Cow::Borrowed(t)),
        ValueRef::Integer(i) => Some(Cow::Owned(i.to_string().into_bytes())),
        ValueRef::Real(f) => Some(Cow::Owned(f.to_string().into_bytes())),
    }
}

/// Aggregates the rows with a rowid above `after`; returns the largest rowid read
/// (`after` when there was none).
fn aggregate_table(
    path: &Path,
    table: &str,
    after: i64,
    agg: &mut Aggregator<'_>,
    progress: &Progress,
) -> Result<i64, BatchError> {
    validate_table_name(table)?;
    if !path.exists() {
        return Err(BatchError::io(
            "cannot read",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let sql_err = |e| super::error(path, e);
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql_err)?;
    let mut columns = Vec::new();
    {
        let mut info = conn
            .prepare(&format!("PRAGMA table_info(\"{table}\")"))
            .map_err(sql_err)?;
        let mut rows = info.query([]).map_err(sql_err)?;
        while let Some(row) = rows.next().map_err(sql_err)? {
            columns.push(
                row.get::<_, String>(1)
                    .map_err(sql_err)?
                    .to_ascii_lowercase(),
            );
        }
    }
    let invalid = |reason: String| BatchError::InvalidInput {
        path: format!("{}?table={table}", path.display()),
        reason,
    };
    if columns.is_empty() {
        return Err(invalid("no such table".into()));
    }
    for needed in ["user_id", "metric", "value", "recorded_at"] {
        if !columns.iter().any(|c| c == needed) {
            return Err(invalid(format!("the table has no `{needed}` column")));
        }
    }
    let unit = if columns.iter().any(|c| c == "unit") {
        "unit"
    } else {
        "NULL"
    };
    let sql = format!(
        "SELECT rowid, user_id, metric, value, {unit}, recorded_at FROM \"{table}\" WHERE rowid > ?1 ORDER BY rowid"
    );
    let mut stmt = conn.prepare(&sql).map_err(sql_err)?;
    let mut rows = stmt.query([after]).map_err(sql_err)?;
    let mut last = after;
    let mut since = 0u64;
    while let Some(row) = rows.next().map_err(sql_err)? {
        let rowid: i64 = row.get(0).map_err(sql_err)?;
        last = rowid;
        let get = |i: usize| row.get_ref(i).map_err(sql_err);
        let user_id = text(get(1)?);
        let metric = text(get(2)?);
        let unit = text(get(4)?);
        let recorded_at = text(get(5)?);
        let value_ref = get(3)?;
        let value_text;
        let value = match value_ref {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(RawValue::Number(i as f64)),
            ValueRef::Real(f) => Some(RawValue::Number(f)),
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                value_text = t;
                Some(RawValue::Text(value_text))
            }
        };
        let raw = RawReading {
            user_id: user_id.as_deref(),
            metric: metric.as_deref(),
            value,
            unit: unit.as_deref(),
            recorded_at: recorded_at.as_deref(),
            source: None,
        };
        let record = || {
            format!(
                "{} {} {:?} {} {}",
                String::from_utf8_lossy(raw.user_id.unwrap_or_default()),
                String::from_utf8_lossy(raw.metric.unwrap_or_default()),
                raw.value,
                String::from_utf8_lossy(raw.unit.unwrap_or_default()),
                String::from_utf8_lossy(raw.recorded_at.unwrap_or_default()),
            )
        };
        agg.push(&raw, Position::Row(rowid), record)?;
        since += 1;
        if since == PROGRESS_EVERY {
            progress.add(since, 0);
            since = 0;
        }
    }
    progress.add(since, 0);
    Ok(last)
}
