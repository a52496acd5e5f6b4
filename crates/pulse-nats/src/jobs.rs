//! Scheduled jobs across instances, in JetStream KV buckets: a once-per-tick lease and a
//! checkpoint store.
//!
//! Every instance runs the same schedule; before running a job for a tick, each asks
//! [`NatsLog::try_acquire_job`], which creates the key `<job>.<tick>` only if absent
//! (KV `create`, a publish with an expected last subject sequence of 0): exactly one
//! instance wins, whatever the timing. Leases live `lease_ttl` (the bucket's max age;
//! the server of this deployment has no per-key TTL) — long past any tick's misfire
//! grace. Checkpoints are one key per job, kept forever.
//!
//! Job names may hold any character, keys may not: names are base64url-encoded.

use async_nats::jetstream::kv;
use async_nats::jetstream::kv::CreateErrorKind;
use async_nats::jetstream::stream::StorageType;
use pulse_core::LogError;

use crate::append::id_key;
use crate::error::classify;
use crate::log::ensure_bucket;
use crate::NatsLog;

impl NatsLog {
    fn storage(&self) -> StorageType {
        if self.shared.options.memory_storage {
            StorageType::Memory
        } else {
            StorageType::File
        }
    }

    async fn leases(&self) -> Result<&kv::Store, LogError> {
        let shared = &self.shared;
        shared
            .leases
            .get_or_try_init(|| {
                ensure_bucket(
                    &shared.client,
                    &shared.js,
                    &shared.names.leases_bucket,
                    shared.options.lease_ttl,
                    self.storage(),
                )
            })
            .await
    }

    async fn checkpoints(&self) -> Result<&kv::Store, LogError> {
        let shared = &self.shared;
        shared
            .checkpoints
            .get_or_try_init(|| {
                ensure_bucket(
                    &shared.client,
                    &shared.js,
                    &shared.names.checkpoints_bucket,
                    std::time::Duration::ZERO,
                    self.storage(),
                )
            })
            .await
    }

    /// Claims the run of `job` at `tick`: `true` for exactly one caller across every
    /// instance sharing the log, `false` for the others.
    pub async fn try_acquire_job(&self, job: &str, tick: i64) -> Result<bool, LogError> {
        let leases = self.leases().await?;
        let key = format!("{}.{tick}", id_key(job));
        let holder = self.shared.client.server_info().client_id.to_string();
        match leases.create(key, holder.into()).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), CreateErrorKind::AlreadyExists) => Ok(false),
            Err(e) => Err(classify(&self.shared.client, "cannot claim a job lease", e)),
        }
    }

    /// The last checkpoint stored for `job`.
    pub async fn load_checkpoint(&self, job: &str) -> Result<Option<Vec<u8>>, LogError> {
        let checkpoints = self.checkpoints().await?;
        checkpoints
            .get(id_key(job))
            .await
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(|e| classify(&self.shared.client, "cannot load a checkpoint", e))
    }

    /// Stores `checkpoint` as the latest of `job`, replacing the previous one.
    pub async fn store_checkpoint(&self, job: &str, checkpoint: &[u8]) -> Result<(), LogError> {
        let checkpoints = self.checkpoints().await?;
        checkpoints
            .put(id_key(job), checkpoint.to_vec().into())
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.shared.client, "cannot store a checkpoint", e))
    }
}
