//! [`Shared`]: what every clone of a [`SqliteLog`](crate::SqliteLog) handle shares (the
//! writer's queue, the readers, the group registry), and the calls the other modules
//! make through it.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use parking_lot::Mutex;
use pulse_core::{Appended, Event, LogError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::codec::PendingEvent;
use crate::group::Groups;
use crate::reader::Readers;
use crate::writer::{Command, DirtyOffsets, WriteOp};

/// What every clone of a handle shares.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// `None` when opened read-only.
    pub(crate) writer: Option<mpsc::Sender<Command>>,
    pub(crate) last_seq: watch::Receiver<u64>,
    pub(crate) readers: Readers,
    pub(crate) dirty: DirtyOffsets,
    pub(crate) groups: Mutex<Groups>,
    pub(crate) writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Keeps the checkpoint thread running.
    pub(crate) _alive: Option<Arc<()>>,
}

impl Drop for Shared {
    /// The last handle is gone: let the writer store pending group positions and wait
    /// for it, so the file is unlocked once the log is dropped.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn writer(&self) -> Result<&mpsc::Sender<Command>, LogError> {
        self.writer
            .as_ref()
            .ok_or_else(|| LogError::Storage(format!("{} is open read-only", self.path.display())))
    }

    /// Runs `op` in the writer's next transaction and waits for the commit.
    pub(crate) async fn write(&self, op: WriteOp) -> Result<u64, LogError> {
        let (reply, result) = oneshot::channel();
        self.writer()?
            .send(Command::Write { op, reply })
            .await
            .map_err(|_| LogError::Closed)?;
        result.await.map_err(|_| LogError::Closed)?
    }

    pub(crate) async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        pulse_core::log::refuse_repeated_ids(&events)?;
        let writer = self.writer()?;
        let now = Utc::now();
        let pending = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| {
                PendingEvent::prepare(event, now)
                    .map_err(|source| LogError::InvalidEvent { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, result) = oneshot::channel();
        writer
            .send(Command::Append {
                events: pending,
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        result.await.map_err(|_| LogError::Closed)?
    }

    pub(crate) async fn flush(&self) -> Result<(), LogError> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        let (reply, result) = oneshot::channel();
        writer
            .send(Command::Flush { reply })
            .await
            .map_err(|_| LogError::Closed)?;
        result.await.map_err(|_| LogError::Closed)?
    }
}
