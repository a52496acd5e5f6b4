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
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pulse_core::LogError;
use pulse_scheduler::{JobLease, LeaseError};

use crate::append::id_key;
use crate::error::classify;
use crate::log::ensure_bucket;
use crate::NatsLog;

fn lease_key(job: &str, tick: DateTime<Utc>) -> String {
    format!("{}.{}", id_key(job), tick.timestamp_millis())
}

#[async_trait]
impl JobLease for NatsLog {
    async fn try_acquire(&self, job: &str, tick: DateTime<Utc>) -> Result<bool, LeaseError> {
        self.try_acquire_job(job, tick)
            .await
            .map_err(|e| LeaseError::Backend(Box::new(e)))
    }
}

impl NatsLog {
    pub(crate) fn storage(&self) -> StorageType {
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

    /// Claims the run of `job` at `tick` (the scheduler's tick instant): `true` for
    /// exactly one caller across every instance sharing the log, `false` for the others.
    pub async fn try_acquire_job(&self, job: &str, tick: DateTime<Utc>) -> Result<bool, LogError> {
        let leases = self.leases().await?;
        match leases
            .create(lease_key(job, tick), self.holder().into())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), CreateErrorKind::AlreadyExists) => Ok(false),
            Err(e) => Err(classify(&self.shared.client, "cannot claim a job lease", e)),
        }
    }

    /// The instance that claimed `job` at `tick`, if any (its client name on the server).
    pub async fn job_holder(
        &self,
        job: &str,
        tick: DateTime<Utc>,
    ) -> Result<Option<String>, LogError> {
        let leases = self.leases().await?;
        leases
            .get(lease_key(job, tick))
            .await
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|e| classify(&self.shared.client, "cannot read a job lease", e))
    }

    /// This instance's name in job leases: its client id on the server it first
    /// connected to, and a random part that tells apart instances behind one proxy.
    fn holder(&self) -> String {
        let info = self.shared.client.server_info();
        format!("{}-{}", info.client_id, self.shared.instance)
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
