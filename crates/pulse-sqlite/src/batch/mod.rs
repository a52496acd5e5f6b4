//! SQLite for pulse-batch: what `pulse aggregate` reads and writes when a spec says
//! `sqlite:` — readings tables ([`SqliteTable`]) and the state store of incremental runs
//! and `sqlite:` outputs ([`SqliteState`]) — opened for the runner through [`Sqlite`].
//!
//! pulse-batch holds the maths, the traits and the one runner and links no database; the
//! SQLite side of it lives here, beside the SQLite event log, as PostgreSQL's lives in
//! pulse-postgres. The per-job stores of `pulse serve`'s jobs are
//! [`LocalStore`](crate::LocalStore), built on [`SqliteState`].

mod state;
mod table;

use std::path::Path;

use pulse_batch::BatchError;
use pulse_batch::TableSource;
use pulse_batch::{Databases, StateStore};

pub use state::SqliteState;
pub use table::SqliteTable;

/// Opens SQLite tables and state stores for the runner
/// ([`Job::with_databases`](pulse_batch::Job::with_databases)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sqlite;

impl Databases for Sqlite {
    fn open_state(&self, path: &Path) -> Result<Box<dyn StateStore>, BatchError> {
        Ok(Box::new(SqliteState::open(path)?))
    }

    fn open_table(&self, path: &Path, table: &str) -> Result<Box<dyn TableSource>, BatchError> {
        Ok(Box::new(SqliteTable::new(path, table)?))
    }
}

/// A SQLite failure of the database at `path`.
pub(crate) fn error(path: &Path, e: rusqlite::Error) -> BatchError {
    BatchError::database(path, e)
}
