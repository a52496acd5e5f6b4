//! `pulse aggregate --input postgres://...`: a readings table in PostgreSQL as the input
//! of an aggregation run.
//!
//! pulse-batch links no database driver, so this module wires pulse-postgres's
//! [`ReadingsTable`] into the runner as a [`TableSource`]; from there on the run is the
//! one a SQLite table gets: the position is the largest `id` read, committed with the
//! aggregates in the `--state` store. The session is read-only and creates nothing in the
//! database (no Pulse event-log tables).
//!
//! Grammar: `postgres://[USER[:PASSWORD]@]HOST[:PORT][/DB]?table=NAME[&schema=NAME]`
//! (`postgresql://` too). `table` is required, `schema` defaults to `public`, each may
//! appear once; names are 1 to 63 of `[a-z0-9_]`, not starting with a digit. Any other
//! query parameter (`connect_timeout=10`, `sslmode=verify-full&sslrootcert=/ca.pem`, ...)
//! goes to the connection, TLS as in libpq ([`pulse_postgres::tls`]).

use std::time::Duration;

use pulse_batch::Aggregator;
use pulse_batch::BatchError;
use pulse_batch::Progress;
use pulse_batch::{ExternalTable, Input, TableSource};
use pulse_postgres::batch::{validate_name, ReadingsTable};

/// How long to wait for the server unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the grammar looks like, for error messages.
const EXPECTED: &str = "expected postgres://USER@HOST:PORT/DB?table=NAME[&schema=NAME]";

/// Whether `spec` names a PostgreSQL input rather than a file or SQLite table.
pub(crate) fn is_postgres(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// A parsed `--input postgres://...`, not yet connected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PostgresInput {
    /// The connection URL without Pulse's own parameters.
    url: String,
    schema: String,
    table: String,
}

impl PostgresInput {
    /// Parses and checks `spec` (see the module docs); errors never show a password.
    pub(crate) fn parse(spec: &str) -> Result<Self, BatchError> {
        let bad = |why: &str| BatchError::InvalidSpec(format!("input {:?}: {why}", redact(spec)));
        let (base, query) = spec.split_once('?').unwrap_or((spec, ""));
        let authority = base
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(bad(&format!("no server; {EXPECTED}")));
        }
        let (mut table, mut schema, mut rest) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "table" => &mut table,
                "schema" => &mut schema,
                _ => {
                    rest.push(pair);
                    continue;
                }
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(bad(&format!("`{key}` is given twice")));
            }
        }
        let table = table.ok_or_else(|| bad(&format!("no table; {EXPECTED}")))?;
        let schema = schema.unwrap_or_else(|| "public".to_owned());
        validate_name("table", &table)?;
        validate_name("schema", &schema)?;
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        // The rest (port, parameters, TLS settings and their root file) is checked before
        // any connection is tried.
        pulse_postgres::tls::connection(&url).map_err(|e| bad(&format!("{e}; {EXPECTED}")))?;
        Ok(Self { url, schema, table })
    }

    /// Connects (read-only) and returns the input for the runner.
    pub(crate) fn open(self) -> Result<Input, BatchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BatchError::InputUnavailable {
                input: redact(&self.url),
                reason: format!("cannot start the async runtime: {e}"),
            })?;
        let table = runtime.block_on(ReadingsTable::connect(
            &self.url,
            &self.schema,
            &self.table,
            CONNECT_TIMEOUT,
        ))?;
        Ok(Input::External(ExternalTable::new(PostgresSource {
            runtime,
            table,
        })))
    }
}

/// `spec` with the password, if any, replaced by `***`.
fn redact(spec: &str) -> String {
    // The one redaction of backend URLs: passwords, tokens and secret query parameters.
    pulse_core::redact::redact_url(spec)
}

/// The runner's view of a connected table: each read drives the connection on a runtime
/// of its own, since the runner itself is synchronous.
struct PostgresSource {
    runtime: tokio::runtime::Runtime,
    table: ReadingsTable,
}

impl TableSource for PostgresSource {
    fn source_id(&self) -> String {
        self.table.label().to_owned()
    }

    fn aggregate(
        &self,
        after: i64,
        agg: &mut Aggregator<'_>,
        progress: &Progress,
    ) -> Result<i64, BatchError> {
        self.runtime
            .block_on(self.table.aggregate(after, agg, progress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(spec: &str) -> PostgresInput {
        PostgresInput::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    #[test]
    fn the_grammar_takes_table_schema_and_driver_parameters() {
        assert_eq!(
            parsed("postgres://pulse@db:5432/health?table=readings"),
            PostgresInput {
                url: "postgres://pulse@db:5432/health".into(),
                schema: "public".into(),
                table: "readings".into(),
            }
        );
        assert_eq!(
            parsed("postgresql://u:pw@db/h?schema=raw&connect_timeout=3&table=r_2026"),
            PostgresInput {
                url: "postgresql://u:pw@db/h?connect_timeout=3".into(),
                schema: "raw".into(),
                table: "r_2026".into(),
            }
        );
        assert!(is_postgres("postgresql://db/h?table=r"));
        assert!(!is_postgres("sqlite:db?table=r"));
    }

    #[test]
    fn bad_specs_are_refused_before_connecting() {
        for bad in [
            "postgres://db/h",
            "postgres://db/h?schema=s",
            "postgres://db/h?table=",
            "postgres://db/h?table=Readings",
            "postgres://db/h?table=r;drop",
            "postgres://db/h?table=r&table=s",
            "postgres://db/h?table=r&schema=a.b",
            "postgres://db:notaport/h?table=r",
            "postgres:///h?table=r",
            "postgres://db/h?table=r&bogus_option=1",
            "postgres://db/h?table=r&sslmode=verify-full",
            "postgres://db/h?table=r&sslmode=verify-ca&sslrootcert=/no/such/ca.pem",
            "postgres://db/h?table=r&sslmode=sometimes",
        ] {
            assert!(
                matches!(PostgresInput::parse(bad), Err(BatchError::InvalidSpec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_never_show_a_password() {
        let err = PostgresInput::parse("postgres://u:hunter2@db/h?schema=s")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("u:***@db"), "{err}");
        assert_eq!(redact("postgres://db/h?table=r"), "postgres://db/h?table=r");
    }
}
