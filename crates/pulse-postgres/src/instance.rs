//! The instance registry: the `instances` table, where every instance sharing the log
//! records that it is alive. A fetch of any instance hands back the in-flight deliveries
//! of an instance whose heartbeat is older than the instance timeout (see
//! [`crate::group`]); an instance that leaves, or comes back under its name, ends the
//! leases of what it had in flight at once.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use pulse_core::LogError;
use tokio_util::sync::CancellationToken;

use crate::error::{self, DbResult};

/// Records the instance as alive. A named instance that reconnects also ends the leases
/// of what it had in flight: that work died with its previous process.
pub(crate) async fn register_instance(
    client: &impl GenericClient,
    instance: &str,
    reclaim: bool,
) -> Result<(), LogError> {
    client
        .execute(
            "INSERT INTO instances (id, heartbeat) VALUES ($1, now()) \
             ON CONFLICT (id) DO UPDATE SET heartbeat = now()",
            &[&instance],
        )
        .await
        .db()?;
    if reclaim {
        let released = end_leases(client, instance).await?;
        if released > 0 {
            tracing::info!(instance, released, "took back deliveries of a previous run");
        }
    }
    Ok(())
}

/// Removes the instance and ends the leases of everything it has in flight.
pub(crate) async fn deregister_instance(
    client: &impl GenericClient,
    instance: &str,
) -> Result<(), LogError> {
    client
        .execute("DELETE FROM instances WHERE id = $1", &[&instance])
        .await
        .db()?;
    end_leases(client, instance).await?;
    Ok(())
}

/// Makes the instance's in-flight rows expire now; the next fetch of any instance
/// redelivers (or dead-letters) them like any expired lease.
async fn end_leases(client: &impl GenericClient, instance: &str) -> Result<u64, LogError> {
    client
        .execute(
            "UPDATE deliveries SET due_at = now() WHERE owner = $1 AND in_flight",
            &[&instance],
        )
        .await
        .db()
}

/// Refreshes the instance's heartbeat until stopped; also forgets instances silent for
/// an hour, so the table stays small.
pub(crate) async fn heartbeat(
    pool: Pool,
    instance: String,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        beats += 1;
        let result = async {
            let client = pool.get().await.map_err(error::pool)?;
            client
                .execute(
                    "INSERT INTO instances (id, heartbeat) VALUES ($1, now()) \
                     ON CONFLICT (id) DO UPDATE SET heartbeat = now()",
                    &[&instance],
                )
                .await
                .db()?;
            if beats % 600 == 0 {
                client
                    .execute(
                        "DELETE FROM instances WHERE heartbeat < now() - interval '1 hour'",
                        &[],
                    )
                    .await
                    .db()?;
            }
            Ok::<(), LogError>(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(%err, %instance, "postgres heartbeat failed");
        }
    }
}
