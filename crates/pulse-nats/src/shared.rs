//! [`Shared`]: what every operation of a [`NatsLog`](crate::NatsLog) handle uses (the
//! client, the streams and KV buckets, the registry of this instance's groups), which
//! every other module takes. It and [`crate::group`] are a registry/handle pair: it holds
//! the [`GroupHandle`]s, the group module works through it.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::{self, kv, stream};
use async_nats::Client;
use parking_lot::Mutex;
use tokio::sync::{watch, OnceCell};

use crate::group::GroupHandle;
use crate::options::{Names, NatsOptions};

/// What every operation of a handle uses.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) js: jetstream::Context,
    pub(crate) names: Names,
    pub(crate) options: NatsOptions,
    pub(crate) stream: stream::Stream,
    pub(crate) dead: stream::Stream,
    pub(crate) ids: Option<kv::Store>,
    pub(crate) leases: OnceCell<kv::Store>,
    pub(crate) checkpoints: OnceCell<kv::Store>,
    pub(crate) aggregates: OnceCell<kv::Store>,
    pub(crate) tail: watch::Sender<u64>,
    /// Held while the publishes of one chunk are handed to the client, so that a batch is
    /// stored in order and publish-ack permits cannot run out mid-chunk.
    pub(crate) send_lock: tokio::sync::Mutex<()>,
    pub(crate) groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
    /// A random name for this handle.
    pub(crate) instance: String,
}
