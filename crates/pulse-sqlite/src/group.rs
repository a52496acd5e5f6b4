//! Consumer groups on SQLite: pulse-core's [`GroupState`] in memory, its position and
//! dead letters on disk.
//!
//! Delivery bookkeeping (in flight, redelivery, per-subject order) is
//! [`GroupState`]'s, shared with every single-node backend. This module adds what
//! survives a crash: the group's configuration and committed offset (written by the
//! writer in batches and on `flush`), the dead-letter rows, and restoring the state
//! after a restart from the committed offset, so that nothing acknowledged is skipped.
//!
//! A dead letter must be on disk before the committed offset passes its event: until
//! its row is stored, the position written for the group stays below it. The attempt
//! count of a failed delivery is stored when it fails (module `attempts`), so
//! `max_deliver` counts across restarts.

use std::collections::{BTreeSet, HashMap};

use pulse_core::group::{AckEffect, DeadLetterDraft, FailedAttempts, GroupState, NackEffect};
use pulse_core::{
    log::check_group_pattern, log::validate_group_name, Delivery, GroupConfig, GroupInfo, LogError,
    NackOutcome, Pattern, StartPosition, StoredEvent,
};
use rusqlite::Connection;
use tokio::time::Instant;

use crate::attempts;
use crate::codec::{decode, COLUMNS};
use crate::dead_letter;
use crate::error::sqlite_error;
use crate::metrics as m;
use crate::shared::Shared;

/// The most rows one fetch scans for a group's pattern, so a rare pattern over a long
/// log costs several short fetches instead of one long one.
const MAX_SCAN_ROWS: usize = 65_536;

/// One group in memory.
pub(crate) struct Group {
    pub(crate) state: GroupState,
    /// Offsets dead-lettered in memory whose row is not stored yet.
    unstored: BTreeSet<u64>,
    /// The position last handed to the writer.
    marked: u64,
}

impl Group {
    pub(crate) fn new(mut state: GroupState) -> Self {
        state.track_failures();
        let marked = state.committed();
        Self {
            state,
            unstored: BTreeSet::new(),
            marked,
        }
    }

    /// The position that may be written: below any dead letter not stored yet.
    fn durable_committed(&self) -> u64 {
        let committed = self.state.committed();
        match self.unstored.first() {
            Some(&offset) => committed.min(offset - 1),
            None => committed,
        }
    }
}

/// The groups of a log, by name.
pub(crate) type Groups = HashMap<String, Group>;

impl Shared {
    /// Stores the attempt counts of failed deliveries before the caller answers, so a
    /// nack that returned is counted after a restart. Appends waiting meanwhile share the
    /// transaction, so a burst of failures costs one commit, not one each.
    async fn store_failures(
        &self,
        name: &str,
        failures: Vec<FailedAttempts>,
    ) -> Result<(), LogError> {
        if failures.is_empty() {
            return Ok(());
        }
        let group = name.to_owned();
        self.write(Box::new(move |conn| {
            attempts::store(conn, &group, &failures)
        }))
        .await
        .map(|_| ())
    }

    fn mark(&self, name: &str, group: &mut Group) {
        let committed = group.durable_committed();
        if committed > group.marked {
            group.marked = committed;
            self.dirty.lock().insert(name.to_owned(), committed);
        }
    }

    pub(crate) async fn ensure_group(
        &self,
        name: &str,
        config: GroupConfig,
    ) -> Result<GroupInfo, LogError> {
        validate_group_name(name)?;
        if config.max_deliver == 0 {
            return Err(LogError::InvalidGroup(
                "max_deliver must be at least 1".into(),
            ));
        }
        let start = match config.start {
            StartPosition::Earliest => 0,
            StartPosition::Latest => *self.last_seq.borrow(),
        };
        let (owned, row) = (name.to_owned(), config.clone());
        let committed = self
            .write(Box::new(move |conn| upsert(conn, &owned, &row, start)))
            .await?;
        let mut groups = self.groups.lock();
        let group = groups
            .entry(name.to_owned())
            .or_insert_with(|| Group::new(GroupState::new(name, config.clone(), committed)));
        // The stored pattern was checked by the writer; keep the one in memory, which a
        // concurrent `set_group_pattern` may have changed since.
        let mut joined = group.state.config().clone();
        joined.max_deliver = config.max_deliver;
        joined.ack_wait = config.ack_wait;
        group.state.set_config(joined);
        Ok(group.state.info())
    }

    pub(crate) async fn set_group_pattern(
        &self,
        name: &str,
        pattern: Pattern,
    ) -> Result<GroupInfo, LogError> {
        let (owned, text) = (name.to_owned(), pattern.as_str().to_owned());
        self.write(Box::new(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE consumer_groups SET pattern = ?2 WHERE name = ?1",
                    rusqlite::params![owned, text],
                )
                .map_err(|e| sqlite_error("cannot store a consumer group", e))?;
            if changed == 0 {
                return Err(LogError::UnknownGroup(owned));
            }
            Ok(0)
        }))
        .await?;
        let mut groups = self.groups.lock();
        let group = get_mut(&mut groups, name)?;
        let mut config = group.state.config().clone();
        config.pattern = pattern;
        group.state.set_config(config);
        Ok(group.state.info())
    }

    pub(crate) async fn fetch(&self, name: &str, max: usize) -> Result<Vec<Delivery>, LogError> {
        let (window, pattern) = {
            let groups = self.groups.lock();
            let group = get(&groups, name)?;
            (
                group.state.admit_window(),
                group.state.config().pattern.clone(),
            )
        };
        let last = *self.last_seq.borrow();
        let admitted = match window {
            Some((after, limit)) if after < last => {
                let scan = self
                    .readers
                    .run(move |conn| scan(conn, after, limit, &pattern))
                    .await?;
                Some(scan)
            }
            _ => None,
        };
        let (deliveries, drafts, failures) = {
            let mut groups = self.groups.lock();
            let group = get_mut(&mut groups, name)?;
            if let Some((events, scanned_to)) = admitted {
                group.state.admit(events, scanned_to);
            }
            let (deliveries, drafts) = group.state.take_due(Instant::now(), max);
            for draft in &drafts {
                if draft.existing_id.is_none() {
                    group.unstored.insert(draft.event.offset);
                }
            }
            self.mark(name, group);
            (deliveries, drafts, group.state.take_failures())
        };
        // Expired deliveries: the handed-out events are not held back by a failed store.
        if let Err(err) = self.store_failures(name, failures).await {
            tracing::error!(group = name, %err, "cannot store attempt counts");
        }
        for draft in drafts {
            // The deliveries were handed out already; a failed store keeps the position
            // below the event, so it comes back after a restart.
            if let Err(err) = self.store_dead_letter(name, draft).await {
                tracing::error!(group = name, %err, "cannot store a dead letter");
            }
        }
        Ok(deliveries)
    }

    pub(crate) async fn ack(&self, name: &str, offsets: &[u64]) -> Result<(), LogError> {
        let mut resolved = Vec::new();
        {
            let mut groups = self.groups.lock();
            let group = get_mut(&mut groups, name)?;
            for &offset in offsets {
                if let AckEffect::ResolvedDeadLetter(id) = group.state.ack(offset) {
                    resolved.push(id);
                }
            }
            self.mark(name, group);
        }
        for id in resolved {
            self.write(Box::new(move |conn| dead_letter::resolve(conn, id)))
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn nack(
        &self,
        name: &str,
        offset: u64,
        delay: std::time::Duration,
        error: &str,
    ) -> Result<NackOutcome, LogError> {
        let (effect, failures) = {
            let mut groups = self.groups.lock();
            let group = get_mut(&mut groups, name)?;
            let effect = group.state.nack(offset, delay, error, Instant::now())?;
            if let NackEffect::DeadLetter(draft) = &effect {
                if draft.existing_id.is_none() {
                    group.unstored.insert(draft.event.offset);
                }
            }
            (effect, group.state.take_failures())
        };
        match effect {
            NackEffect::Redeliver => {
                // The redelivery is decided in memory either way; a failed store only
                // means this attempt is not counted after a restart.
                if let Err(err) = self.store_failures(name, failures).await {
                    tracing::error!(group = name, %err, "cannot store attempt counts");
                }
                Ok(NackOutcome::Redeliver)
            }
            NackEffect::DeadLetter(draft) => self
                .store_dead_letter(name, *draft)
                .await
                .map(NackOutcome::DeadLettered),
        }
    }

    async fn store_dead_letter(&self, name: &str, draft: DeadLetterDraft) -> Result<u64, LogError> {
        let offset = draft.event.offset;
        let id = self
            .write(Box::new(move |conn| dead_letter::store(conn, &draft)))
            .await?;
        metrics::counter!(m::DEAD_LETTERED_EVENTS).increment(1);
        let mut groups = self.groups.lock();
        if let Some(group) = groups.get_mut(name) {
            group.unstored.remove(&offset);
            self.mark(name, group);
        }
        Ok(id)
    }

    pub(crate) async fn redrive(&self, id: u64) -> Result<(), LogError> {
        let letter = self
            .readers
            .run(move |conn| dead_letter::get(conn, id))
            .await?;
        if !self.groups.lock().contains_key(&letter.group) {
            return Err(LogError::UnknownGroup(letter.group));
        }
        self.write(Box::new(move |conn| dead_letter::mark_redriven(conn, id)))
            .await?;
        let mut groups = self.groups.lock();
        get_mut(&mut groups, &letter.group)?
            .state
            .redrive(id, letter.event);
        Ok(())
    }

    pub(crate) fn group_infos(&self) -> Vec<GroupInfo> {
        let groups = self.groups.lock();
        let mut infos: Vec<GroupInfo> = groups.values().map(|g| g.state.info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }
}

fn get<'a>(groups: &'a Groups, name: &str) -> Result<&'a Group, LogError> {
    groups
        .get(name)
        .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))
}

fn get_mut<'a>(groups: &'a mut Groups, name: &str) -> Result<&'a mut Group, LogError> {
    groups
        .get_mut(name)
        .ok_or_else(|| LogError::UnknownGroup(name.to_owned()))
}

/// Reads up to `limit` events of `pattern` after `after`; returns them and the highest
/// offset looked at.
fn scan(
    conn: &Connection,
    after: u64,
    limit: usize,
    pattern: &Pattern,
) -> Result<(Vec<StoredEvent>, u64), LogError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .map_err(|e| sqlite_error("cannot prepare a group read", e))?;
    let mut rows = stmt
        .query(rusqlite::params![
            i64::try_from(after).unwrap_or(i64::MAX),
            MAX_SCAN_ROWS as i64
        ])
        .map_err(|e| sqlite_error("cannot read events for a group", e))?;
    let mut events = Vec::new();
    let mut scanned_to = after;
    while let Some(row) = rows
        .next()
        .map_err(|e| sqlite_error("cannot read events for a group", e))?
    {
        let seq: i64 = row
            .get(0)
            .map_err(|e| sqlite_error("cannot read an offset", e))?;
        scanned_to = seq as u64;
        let ty = row
            .get_ref(2)
            .and_then(|v| Ok(v.as_str()?))
            .map_err(|e| sqlite_error("cannot read an event type", e))?;
        if !pattern.matches(ty) {
            continue;
        }
        events.push(decode(row).map_err(|e| sqlite_error("cannot decode a stored event", e))?);
        if events.len() >= limit {
            break;
        }
    }
    Ok((events, scanned_to))
}

/// Creates a group at `start`, or joins it: the pattern must be the stored one, the
/// delivery settings are updated. Returns its committed offset.
fn upsert(
    conn: &Connection,
    name: &str,
    config: &GroupConfig,
    start: u64,
) -> Result<u64, LogError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT pattern FROM consumer_groups WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .map_err(|e| sqlite_error("cannot read a consumer group", e))?;
    if let Some(stored) = stored {
        let existing = Pattern::parse(&stored).map_err(|e| {
            LogError::Storage(format!("group {name:?} has an unreadable pattern: {e}"))
        })?;
        check_group_pattern(name, &existing, &config.pattern)?;
    }
    let start_text = match config.start {
        StartPosition::Earliest => "earliest",
        StartPosition::Latest => "latest",
    };
    conn.execute(
        "INSERT INTO consumer_groups (name, pattern, committed, start, max_deliver, ack_wait_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET \
         max_deliver = excluded.max_deliver, ack_wait_ms = excluded.ack_wait_ms",
        rusqlite::params![
            name,
            config.pattern.as_str(),
            start as i64,
            start_text,
            config.max_deliver,
            i64::try_from(config.ack_wait.as_millis()).unwrap_or(i64::MAX)
        ],
    )
    .map_err(|e| sqlite_error("cannot store a consumer group", e))?;
    conn.query_row(
        "SELECT committed FROM consumer_groups WHERE name = ?1",
        [name],
        |row| row.get::<_, i64>(0),
    )
    .map(|c| c as u64)
    .map_err(|e| sqlite_error("cannot read a consumer group", e))
}

/// Rebuilds every group from disk: its configuration, its committed offset, the attempt
/// counts of its failed pending deliveries, and the dead letters that were redriven but
/// not acknowledged before the restart.
pub(crate) fn restore(conn: &Connection) -> Result<Groups, LogError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, pattern, committed, start, max_deliver, ack_wait_ms FROM consumer_groups",
        )
        .map_err(|e| sqlite_error("cannot read consumer groups", e))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, u32>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })
        .map_err(|e| sqlite_error("cannot read consumer groups", e))?;
    let mut groups = Groups::new();
    for row in rows {
        let (name, pattern, committed, start, max_deliver, ack_wait_ms) =
            row.map_err(|e| sqlite_error("cannot read a consumer group", e))?;
        let pattern = Pattern::parse(&pattern).map_err(|e| {
            LogError::Storage(format!(
                "consumer group {name:?} has an invalid pattern: {e}"
            ))
        })?;
        let mut config = GroupConfig::new(pattern);
        config.start = if start == "latest" {
            StartPosition::Latest
        } else {
            StartPosition::Earliest
        };
        config.max_deliver = max_deliver.max(1);
        config.ack_wait = std::time::Duration::from_millis(ack_wait_ms.max(0) as u64);
        let committed = committed.max(0) as u64;
        let mut state = GroupState::new(name.clone(), config, committed);
        state.restore_failures(attempts::restore(conn, &name, committed)?);
        groups.insert(name, Group::new(state));
    }
    for letter in dead_letter::redriven(conn)? {
        if let Some(group) = groups.get_mut(&letter.group) {
            group.state.redrive(letter.id, letter.event);
        }
    }
    Ok(groups)
}
