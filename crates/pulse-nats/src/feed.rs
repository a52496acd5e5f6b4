//! The feed of one consumer group on one instance: pull requests to the group's
//! consumers (one per partition and one for events without a subject, see
//! [`partition`](crate::partition)) and the messages they bring.
//!
//! Every request of the group replies to one inbox subscription that lives as long as the
//! feed, so a message is never lost because nobody listens when it comes: whatever a
//! request brings — at once or later — is held here until a `fetch` hands it out (the
//! log keeps held messages alive on the server meanwhile). At most one request per
//! consumer is open at a time, so an idle group costs one waiting request per consumer,
//! renewed when it expires while the group is fetched, and no polling.
//!
//! Three kinds of requests. `no_wait` (sent by `fetch` to a consumer without an open
//! request) asks for what is there now: an empty consumer says so at once (404), a
//! consumer with deliverable events sends them. A partition whose previous event is still
//! unacknowledged elsewhere cannot deliver; JetStream then keeps the request until it can
//! (it is a one-shot request), and the event arrives here whenever that is, into the held
//! messages of a later fetch. A waiting request (`expires`, sent by a waiting fetch) stays
//! open until an event comes or it expires (408).
//!
//! The third is what keeps a busy group fast. A partition hands out one event at a time,
//! so one request per event would cost a round trip per event and tie every partition to
//! the pace of whole fetch rounds. Instead, acknowledging a partition's event opens a
//! standing request on it (see [`Feed::rearm`]): a waiting request for many events, so the
//! server sends the partition's next event the moment the previous ack lands, to
//! whichever instance's request it picks, with no further request. It expires half a
//! liveness window after the instance's last fetch, so an instance that stops fetching
//! stops receiving before `keep_alive` hands back what it holds (a request still open
//! would bring it straight back, a delivery attempt more each time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, StatusCode, Subject};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use pulse_core::{LogError, StoredEvent};
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use crate::codec::decode_event;
use crate::error::classify;
use crate::partition::Part;
use crate::pull::{ack_consumer, ack_info};

/// How long an unanswered `no_wait` request counts as open. JetStream keeps one on a
/// blocked partition until the partition moves on; past this, one more may be sent (a
/// spare request costs the server a little memory and changes nothing else).
const NO_WAIT_OPEN: Duration = Duration::from_secs(30);

/// How many events a standing request (see [`Feed::rearm`]) may bring. A partition
/// sends one at a time, so this only bounds how long the request lasts when events are
/// handled quickly.
const STANDING_BATCH: usize = 1000;

/// A message pulled for the group and not yet handed out.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) reply: Subject,
    pub(crate) event: StoredEvent,
    pub(crate) attempt: u32,
    pub(crate) part: Part,
}

/// How a request asks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ask {
    /// What is there now.
    Now,
    /// Waiting up to this long for an event.
    Wait(Duration),
}

#[derive(Clone, Copy, Debug)]
struct Request {
    /// Messages it may still bring.
    left: usize,
    /// When it is taken as over even without an answer.
    until: Instant,
}

#[derive(Debug)]
struct State {
    /// Arrived and not handed out, by offset.
    held: BTreeMap<u64, Pending>,
    /// The open request of each consumer, by [`Part::index`].
    open: Vec<Option<Request>>,
    /// A consumer of the group does not exist (the group was deleted).
    missing: bool,
    /// When the last message or status came.
    last_answer: Instant,
    /// Per consumer: its request once stayed open through a whole round, and it has not
    /// said "nothing there" since.
    contended: Vec<bool>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    arrived: Notify,
}

/// The feed of one group on one instance.
#[derive(Debug)]
pub(crate) struct Feed {
    inner: Arc<Inner>,
    inbox: String,
    stream: String,
    group: String,
    partitions: u32,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Dropping the subscription with the task tells the server that nobody waits on
        // the open requests any more.
        self.task.abort();
    }
}

impl Feed {
    /// Subscribes the feed's inbox for `group` of `stream`.
    pub(crate) async fn start(
        client: &Client,
        stream: &str,
        group: &str,
        partitions: u32,
    ) -> Result<Self, LogError> {
        let inbox = client.new_inbox();
        let mut sub = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| classify(client, "cannot subscribe the group's inbox", e))?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                held: BTreeMap::new(),
                open: vec![None; partitions as usize + 1],
                missing: false,
                last_answer: Instant::now(),
                contended: vec![false; partitions as usize + 1],
            }),
            arrived: Notify::new(),
        });
        let task = {
            let (inner, client, group) = (inner.clone(), client.clone(), group.to_owned());
            tokio::spawn(async move {
                while let Some(message) = sub.next().await {
                    receive(&inner, &client, &group, partitions, message).await;
                }
            })
        };
        Ok(Self {
            inner,
            inbox,
            stream: stream.to_owned(),
            group: group.to_owned(),
            partitions,
            task,
        })
    }

    /// Sends a request to every consumer without an open one, except `busy` ones (whose
    /// partition this instance holds an event of: JetStream would not deliver anyway);
    /// returns the parts asked. `batch` bounds what the unordered consumer sends; a
    /// partition sends one event at a time anyway.
    pub(crate) async fn request(
        &self,
        client: &Client,
        ask: Ask,
        batch: usize,
        busy: &[Part],
    ) -> Result<Vec<Part>, LogError> {
        let parts: Vec<Part> = Part::all(self.partitions)
            .filter(|p| !busy.contains(p))
            .collect();
        self.send(client, ask, batch, 1, &parts).await
    }

    /// Opens a standing request on each partition of `parts` that has none open: the
    /// partition of an event just acknowledged here can hand out its next one, and the
    /// server sends each next event the moment the previous one is acknowledged, for
    /// up to `wait`, with no request per event.
    pub(crate) async fn rearm(
        &self,
        client: &Client,
        parts: &[Part],
        wait: Duration,
    ) -> Result<(), LogError> {
        self.send(client, Ask::Wait(wait), 1, STANDING_BATCH, parts)
            .await
            .map(|_| ())
    }

    /// Sends a request to each consumer of `parts` without an open one: the unordered
    /// one for up to `batch` events, a partition's for up to `standing`.
    async fn send(
        &self,
        client: &Client,
        ask: Ask,
        batch: usize,
        standing: usize,
        parts: &[Part],
    ) -> Result<Vec<Part>, LogError> {
        let now = Instant::now();
        let mut asked = Vec::new();
        {
            let mut state = self.inner.state.lock();
            for &part in parts {
                let slot = &mut state.open[part.index(self.partitions)];
                if slot.is_some_and(|r| r.until <= now) {
                    *slot = None;
                }
                if slot.is_some() {
                    continue;
                }
                let left = match part {
                    Part::Partition(_) => standing.max(1),
                    Part::Unordered => batch.max(1),
                };
                let until = match ask {
                    Ask::Now => now + NO_WAIT_OPEN,
                    Ask::Wait(wait) => now + wait + Duration::from_secs(1),
                };
                *slot = Some(Request { left, until });
                asked.push((part, left));
            }
        }
        for (i, &(part, left)) in asked.iter().enumerate() {
            let body = match ask {
                Ask::Now => json!({"batch": left, "no_wait": true}),
                Ask::Wait(wait) => json!({"batch": left, "expires": wait.as_nanos() as u64}),
            };
            let sent = client
                .publish_with_reply(
                    format!(
                        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                        self.stream,
                        part.consumer(&self.group)
                    ),
                    format!("{}.{}", self.inbox, part.index(self.partitions)),
                    Bytes::from(body.to_string()),
                )
                .await;
            if let Err(e) = sent {
                // This request and the ones after it were not sent: not open either.
                let mut state = self.inner.state.lock();
                for &(part, _) in &asked[i..] {
                    state.open[part.index(self.partitions)] = None;
                }
                return Err(classify(client, "cannot pull", e));
            }
        }
        Ok(asked.into_iter().map(|(part, _)| part).collect())
    }

    /// Waits until none of `parts` has its request open any more, or `until` comes. A
    /// part whose request once stayed open that long is taken as contended (another
    /// instance holds its partition's previous event: it answers when that one is
    /// acknowledged, into the held messages of a later fetch); once only contended parts
    /// are open and something is held, the wait ends when no answer came for `quiet`.
    pub(crate) async fn answered(&self, parts: &[Part], until: Instant, quiet: Duration) {
        loop {
            let notified = self.inner.arrived.notified();
            let now = Instant::now();
            let wake = {
                let mut state = self.inner.state.lock();
                let open: Vec<usize> = parts
                    .iter()
                    .map(|p| p.index(self.partitions))
                    .filter(|&i| state.open[i].is_some())
                    .collect();
                if open.is_empty() || state.missing {
                    return;
                }
                if now >= until {
                    for &i in &open {
                        state.contended[i] = true;
                    }
                    return;
                }
                let only_contended = open.iter().all(|&i| state.contended[i]);
                if only_contended && !state.held.is_empty() {
                    let quiet_end = state.last_answer + quiet;
                    if now >= quiet_end {
                        return;
                    }
                    until.min(quiet_end)
                } else {
                    until
                }
            };
            let _ = tokio::time::timeout_at(wake, notified).await;
        }
    }

    /// Waits until something is held or `until` comes.
    pub(crate) async fn arrival(&self, until: Instant) {
        let notified = self.inner.arrived.notified();
        if self.held() > 0 || self.inner.state.lock().missing {
            return;
        }
        let _ = tokio::time::timeout_at(until, notified).await;
    }

    /// How many messages are held.
    pub(crate) fn held(&self) -> usize {
        self.inner.state.lock().held.len()
    }

    /// Whether a consumer of the group turned out not to exist.
    pub(crate) fn missing(&self) -> bool {
        self.inner.state.lock().missing
    }

    /// Takes up to `max` held messages, oldest first.
    pub(crate) fn take(&self, max: usize) -> Vec<Pending> {
        let mut state = self.inner.state.lock();
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, pending)) = state.held.pop_first() else {
                break;
            };
            out.push(pending);
        }
        out
    }

    /// The parts of which a message is held.
    pub(crate) fn held_parts(&self) -> Vec<Part> {
        self.inner
            .state
            .lock()
            .held
            .values()
            .map(|p| p.part)
            .collect()
    }

    /// Reply subjects of the held messages (to keep them alive).
    pub(crate) fn held_replies(&self) -> Vec<Subject> {
        self.inner
            .state
            .lock()
            .held
            .values()
            .map(|p| p.reply.clone())
            .collect()
    }
}

/// Files one message of the inbox: an event (held), or a request's status.
async fn receive(
    inner: &Inner,
    client: &Client,
    group: &str,
    partitions: u32,
    message: async_nats::Message,
) {
    inner.state.lock().last_answer = Instant::now();
    match message.status {
        None | Some(StatusCode::OK) => {}
        Some(StatusCode::IDLE_HEARTBEAT) => return,
        Some(StatusCode::NO_RESPONDERS) => {
            inner.state.lock().missing = true;
            inner.arrived.notify_one();
            return;
        }
        Some(status) => {
            // The request is over: nothing there (404), expired (408), or refused (409).
            if status != StatusCode::NOT_FOUND
                && status != StatusCode::TIMEOUT
                && status != StatusCode::REQUEST_TERMINATED
            {
                warn!(group, %status, description = ?message.description, "pull request failed");
            }
            let index = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|i| i.parse::<usize>().ok());
            let mut state = inner.state.lock();
            if let Some(i) = index.filter(|&i| i < state.open.len()) {
                state.open[i] = None;
                if status == StatusCode::NOT_FOUND {
                    state.contended[i] = false;
                }
            }
            drop(state);
            inner.arrived.notify_one();
            return;
        }
    }
    let Some(reply) = message.reply.clone() else {
        return;
    };
    let part = ack_consumer(&reply)
        .and_then(Part::of_consumer)
        .filter(|(g, _)| *g == group)
        .map(|(_, part)| part);
    let (Some(part), Some((attempt, seq, _))) = (part, ack_info(&reply)) else {
        return;
    };
    let decoded = decode_event(seq, &message.payload);
    let bad = {
        // One step, so that nobody sees the request answered before its message is held.
        let mut state = inner.state.lock();
        if let Some(slot) = state.open.get_mut(part.index(partitions)) {
            if let Some(request) = slot {
                request.left = request.left.saturating_sub(1);
                if request.left == 0 {
                    *slot = None;
                }
            }
        }
        match decoded {
            Ok(event) => {
                let pending = Pending {
                    reply: reply.clone(),
                    event,
                    attempt,
                    part,
                };
                state.held.insert(seq, pending);
                None
            }
            Err(err) => Some(err),
        }
    };
    if let Some(err) = bad {
        // Not a Pulse event: it can never be handled, so it is not handed out.
        warn!(group, offset = seq, %err, "terminating a message that is not a Pulse event");
        let _ = client.request(reply, Bytes::from_static(b"+TERM")).await;
    }
    inner.arrived.notify_one();
}
