//! PostgreSQL as a source of pulse-batch aggregation jobs: a table with columns `id`
//! (increasing, e.g. `bigserial`), `user_id`, `metric`, `value`, `recorded_at` and
//! optionally `unit`, streamed through binary `COPY ... TO STDOUT` into an
//! [`Aggregator`]. The position is the largest `id` read, so an incremental run reads
//! only rows added since. The sink is [`aggregates`](crate::aggregates).
//!
//! Two ways in: [`PostgresLog::aggregate_table`] reads a table in the log's own schema
//! over the log's pool (scheduled jobs of `pulse serve`); [`ReadingsTable`] reads any
//! schema over one connection of its own, read-only, without creating Pulse's event-log
//! tables (`pulse aggregate --input postgres://...`), since a database that only holds
//! readings should not gain tables because someone aggregated them.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{pin_mut, TryStreamExt};
use pulse_batch::Aggregator;
use pulse_batch::BatchError;
use pulse_batch::Position;
use pulse_batch::Progress;
use pulse_batch::{RawReading, RawValue};
use pulse_core::LogError;
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config};

use crate::error;
use crate::PostgresLog;

/// Rows between two progress updates.
const PROGRESS_EVERY: u64 = 16 * 1024;

/// Checks a schema or table name spliced into SQL: 1 to 63 characters of `[a-z0-9_]`,
/// not starting with a digit (the names PostgreSQL keeps as written when unquoted).
/// `what` names it in the error, e.g. "table".
pub fn validate_name(what: &str, name: &str) -> Result<(), BatchError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BatchError::InvalidSpec(format!(
            "{what} name {name:?}: expected 1 to 63 lowercase letters, digits and _, not starting with a digit"
        )))
    }
}

pub(crate) fn db(err: LogError) -> BatchError {
    BatchError::Log(err)
}

impl PostgresLog {
    /// A pooled connection for batch work, its failure as a [`BatchError`].
    pub(crate) async fn batch_client(&self) -> Result<deadpool_postgres::Object, BatchError> {
        self.shared
            .pool
            .get()
            .await
            .map_err(error::pool)
            .map_err(db)
    }

    /// Aggregates the rows of `table` (in the log's schema) with an `id`
    /// above `after`; returns the largest `id` read (`after` when there was none).
    pub async fn aggregate_table(
        &self,
        table: &str,
        after: i64,
        agg: &mut Aggregator<'_>,
    ) -> Result<i64, BatchError> {
        validate_name("table", table)?;
        let client = self.batch_client().await?;
        let schema = &self.shared.options.schema;
        copy_readings(&client, schema, table, after, agg, None, |e| {
            db(error::db(e))
        })
        .await
    }
}

/// A readings table on a connection of its own, opened read-only: reading it creates,
/// changes or locks nothing beyond what a `SELECT` does.
///
/// ```no_run
/// # async fn demo(agg: &mut pulse_batch::Aggregator<'_>) -> Result<(), pulse_batch::BatchError> {
/// use std::time::Duration;
/// use pulse_postgres::batch::ReadingsTable;
/// let table = ReadingsTable::connect(
///     "postgres://postgres@127.0.0.1:5432/postgres",
///     "public",
///     "readings",
///     Duration::from_secs(5),
/// )
/// .await?;
/// let last_id = table.aggregate(0, agg, &pulse_batch::Progress::new()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ReadingsTable {
    client: Client,
    schema: String,
    table: String,
    /// How errors name the input: server, database and table, never credentials.
    label: String,
}

impl ReadingsTable {
    /// Connects to `url` (a `postgres://` URL or key=value string) for reading
    /// `schema.table`; fails when the server cannot be reached within `connect_timeout`
    /// (unless the URL sets its own). Needs a tokio runtime: the connection runs as a task.
    pub async fn connect(
        url: &str,
        schema: &str,
        table: &str,
        connect_timeout: Duration,
    ) -> Result<Self, BatchError> {
        validate_name("schema", schema)?;
        validate_name("table", table)?;
        let (mut config, tls) = crate::tls::connection(url).map_err(BatchError::InvalidSpec)?;
        // A `connect_timeout` in the URL wins over the caller's default.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        config.application_name("pulse aggregate");
        // A guarantee, not a habit: this session cannot write even by mistake.
        config.options("-c default_transaction_read_only=on");
        let label = format!("{}?schema={schema}&table={table}", server_label(&config));
        let (client, connection) =
            config
                .connect(tls)
                .await
                .map_err(|e| BatchError::InputUnavailable {
                    input: label.clone(),
                    reason: pulse_core::error_chain(&e),
                })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(%err, "postgres readings connection ended");
            }
        });
        Ok(Self {
            client,
            schema: schema.to_owned(),
            table: table.to_owned(),
            label,
        })
    }

    /// `postgres://HOST:PORT/DB?schema=S&table=T`: where the rows come from, without
    /// user or password; stable across runs, so fit to key a checkpoint.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Aggregates the rows with an `id` above `after`; returns the largest `id` read
    /// (`after` when there was none).
    pub async fn aggregate(
        &self,
        after: i64,
        agg: &mut Aggregator<'_>,
        progress: &Progress,
    ) -> Result<i64, BatchError> {
        let label = self.label.clone();
        copy_readings(
            &self.client,
            &self.schema,
            &self.table,
            after,
            agg,
            Some(progress),
            move |e| BatchError::InputUnavailable {
                input: label.clone(),
                reason: pulse_core::error_chain(&e),
            },
        )
        .await
    }
}

/// `postgres://HOST:PORT/DB` of a connection config (first host, default port 5432).
fn server_label(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{db}")
}

/// Streams the rows of `schema.table` with an `id` above `after` into `agg`; `fail` turns
/// a driver error into the caller's kind of error.
async fn copy_readings(
    client: &Client,
    schema: &str,
    table: &str,
    after: i64,
    agg: &mut Aggregator<'_>,
    progress: Option<&Progress>,
    fail: impl Fn(tokio_postgres::Error) -> BatchError,
) -> Result<i64, BatchError> {
    validate_name("schema", schema)?;
    validate_name("table", table)?;
    let columns: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await
        .map_err(&fail)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let invalid = |reason: String| BatchError::InvalidInput {
        path: format!("postgres table {schema}.{table}"),
        reason,
    };
    if columns.is_empty() {
        return Err(invalid("no such table".into()));
    }
    for needed in ["id", "user_id", "metric", "value", "recorded_at"] {
        if !columns.iter().any(|c| c == needed) {
            return Err(invalid(format!("the table has no `{needed}` column")));
        }
    }
    let unit = if columns.iter().any(|c| c == "unit") {
        "unit::text"
    } else {
        "NULL::text"
    };
    // COPY takes no parameters: `after` is an integer and both names were checked.
    let copy = format!(
        "COPY (SELECT id::bigint, user_id::text, metric::text, value::float8, {unit}, \
         recorded_at::timestamptz FROM \"{schema}\".\"{table}\" WHERE id > {after} ORDER BY id) \
         TO STDOUT (FORMAT binary)"
    );
    let stream = client.copy_out(&copy).await.map_err(&fail)?;
    let rows = BinaryCopyOutStream::new(
        stream,
        &[
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8,
            Type::TEXT,
            Type::TIMESTAMPTZ,
        ],
    );
    pin_mut!(rows);
    let mut last = after;
    let mut since = 0u64;
    while let Some(row) = rows.try_next().await.map_err(&fail)? {
        let decode = |e: tokio_postgres::Error| invalid(format!("unreadable row: {e}"));
        let id: i64 = row.try_get(0).map_err(decode)?;
        let user_id: Option<&str> = row.try_get(1).map_err(decode)?;
        let metric: Option<&str> = row.try_get(2).map_err(decode)?;
        let value: Option<f64> = row.try_get(3).map_err(decode)?;
        let unit: Option<&str> = row.try_get(4).map_err(decode)?;
        let at: Option<DateTime<Utc>> = row.try_get(5).map_err(decode)?;
        let at = at.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        last = id;
        let raw = RawReading {
            user_id: user_id.map(str::as_bytes),
            metric: metric.map(str::as_bytes),
            value: value.map(RawValue::Number),
            unit: unit.map(str::as_bytes),
            recorded_at: at.as_deref().map(str::as_bytes),
            source: None,
        };
        let record = || {
            format!(
                "{} {} {:?} {} {}",
                user_id.unwrap_or_default(),
                metric.unwrap_or_default(),
                value,
                unit.unwrap_or_default(),
                at.as_deref().unwrap_or_default()
            )
        };
        agg.push(&raw, Position::Row(id), record)?;
        since += 1;
        if since == PROGRESS_EVERY {
            if let Some(progress) = progress {
                progress.add(since, 0);
            }
            since = 0;
        }
    }
    if let Some(progress) = progress {
        progress.add(since, 0);
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("table", "readings_2026").is_ok());
        assert!(validate_name("table", "_r").is_ok());
        let long = "r".repeat(64);
        for bad in ["", "Readings", "r;drop", "1r", "a.b", "r\"", long.as_str()] {
            assert!(validate_name("table", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_server_label_has_no_credentials() {
        let config: Config = "postgres://alice:secret@db.example:6543/health"
            .parse()
            .unwrap();
        assert_eq!(server_label(&config), "postgres://db.example:6543/health");
        let config: Config = "postgresql://db.example".parse().unwrap();
        assert_eq!(server_label(&config), "postgres://db.example:5432/postgres");
    }
}
