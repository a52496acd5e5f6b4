//! Creates the schema and applies the numbered migrations in `migrations/`.
//!
//! Several instances may start at once against an empty database, so the whole step runs
//! under a session advisory lock keyed by the schema: the first instance migrates, the
//! others wait and then find nothing to do. A schema migrated by a newer Pulse (a version
//! this build does not know) is left untouched and reported as incompatible.

use pulse_core::LogError;
use tokio_postgres::Client;

use crate::error::DbResult;

/// Every migration, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "events", include_str!("../migrations/0001_events.sql")),
    (2, "groups", include_str!("../migrations/0002_groups.sql")),
    (3, "jobs", include_str!("../migrations/0003_jobs.sql")),
    (
        4,
        "append_function",
        include_str!("../migrations/0004_append_function.sql"),
    ),
    (
        5,
        "aggregates",
        include_str!("../migrations/0005_aggregates.sql"),
    ),
    (
        6,
        "retention",
        include_str!("../migrations/0006_retention.sql"),
    ),
    (
        7,
        "aggregates_by_job",
        include_str!("../migrations/0007_aggregates_by_job.sql"),
    ),
    (
        8,
        "retention_bytes",
        include_str!("../migrations/0008_retention_bytes.sql"),
    ),
];

/// A stable 64-bit advisory lock key for `purpose` in `schema` (FNV-1a), so that logs
/// in different schemas never contend for each other's locks.
pub(crate) fn lock_key(purpose: &str, schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in purpose.bytes().chain([0]).chain(schema.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates `schema` if needed and brings it to the latest version.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<(), LogError> {
    let key = lock_key("migrate", schema);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .db()?;
    let result = migrate_locked(client, schema).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .db();
    result.and(unlock.map(|_| ()))
}

async fn migrate_locked(client: &mut Client, schema: &str) -> Result<(), LogError> {
    // `schema` was checked to be [a-z0-9_]+, so it needs no quoting beyond this.
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS \"{schema}\".pulse_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await
        .db()?;
    let applied: Vec<i32> = client
        .query(
            &format!("SELECT version FROM \"{schema}\".pulse_migrations ORDER BY version"),
            &[],
        )
        .await
        .db()?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.len() as i32;
    if let Some(&newest) = applied.last() {
        if newest > known {
            return Err(LogError::Incompatible(format!(
                "schema {schema:?} is at version {newest}, this Pulse knows up to {known}"
            )));
        }
    }
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let tx = client.transaction().await.db()?;
        tx.batch_execute(&format!("SET LOCAL search_path TO \"{schema}\";"))
            .await
            .db()?;
        tx.batch_execute(sql).await.db()?;
        tx.execute(
            "INSERT INTO pulse_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        tracing::info!(schema, version, name, "applied postgres migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, &(version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(version, i as i32 + 1);
        }
    }

    #[test]
    fn lock_keys_differ_by_schema_and_purpose() {
        assert_ne!(lock_key("append", "a"), lock_key("append", "b"));
        assert_ne!(lock_key("append", "a"), lock_key("migrate", "a"));
        assert_eq!(lock_key("append", "a"), lock_key("append", "a"));
    }
}
