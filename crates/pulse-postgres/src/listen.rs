//! The LISTEN connection: turns other instances' append notifications into moves of the
//! local append watch, so their subscribers wake within milliseconds instead of polling.
//!
//! Every append transaction runs `pg_notify(channel, last offset)`, delivered at commit.
//! This task holds one dedicated connection (not from the pool: a pooled connection
//! would be handed to other work) that LISTENs on the schema's channel. When the
//! connection breaks it reconnects with backoff, and after every (re)connect it reads the
//! last offset, so appends made while it was away are not missed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, Config};
use tokio_util::sync::CancellationToken;

/// What the listener needs.
pub(crate) struct Listener {
    pub(crate) config: Config,
    pub(crate) tls: crate::tls::Tls,
    pub(crate) channel: String,
    pub(crate) tail: Arc<watch::Sender<u64>>,
    pub(crate) stop: CancellationToken,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Listener {
    /// Listens until stopped, reconnecting whenever the connection is lost.
    pub(crate) async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let outcome = tokio::select! {
                () = self.stop.cancelled() => return,
                outcome = self.session(&mut backoff) => outcome,
            };
            if let Err(err) = outcome {
                tracing::warn!(%err, channel = %self.channel, "postgres listen connection lost");
            }
            metrics::counter!(crate::metrics::LISTEN_RECONNECTS_TOTAL).increment(1);
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: LISTEN, catch up, then forward notifications until it ends.
    async fn session(&self, backoff: &mut Duration) -> Result<(), tokio_postgres::Error> {
        let (client, mut connection) = self.config.connect(self.tls.clone()).await?;
        let tail = Arc::clone(&self.tail);
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        let driver = async move {
            while let Some(message) = messages.next().await {
                if let AsyncMessage::Notification(note) = message? {
                    if let Ok(last) = note.payload().parse::<u64>() {
                        advance(&tail, last);
                    }
                }
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        tokio::pin!(driver);
        // The channel name is derived from a checked schema name: no quoting issues.
        let setup = async {
            client
                .batch_execute(&format!("LISTEN \"{}\"", self.channel))
                .await?;
            let row = client.query_one(crate::retention::LAST_OFFSET, &[]).await?;
            Ok::<i64, tokio_postgres::Error>(row.get(0))
        };
        let last = tokio::select! {
            ended = &mut driver => return ended,
            last = setup => last?,
        };
        advance(&self.tail, u64::try_from(last).unwrap_or(0));
        *backoff = MIN_BACKOFF;
        tracing::debug!(channel = %self.channel, "postgres listen connection ready");
        driver.await
    }
}

/// Moves the watch forward, never back.
pub(crate) fn advance(tail: &watch::Sender<u64>, last: u64) {
    tail.send_if_modified(|current| {
        let moved = last > *current;
        if moved {
            *current = last;
        }
        moved
    });
}
