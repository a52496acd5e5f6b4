//! The `EventLog` contract suite: one set of generic checks that every backend runs, so
//! that memory, SQLite, PostgreSQL and NATS keep the same semantics.
//!
//! A backend instantiates it in its integration tests with [`event_log_contract!`], given
//! an async expression that makes a fresh, empty log and a guard kept alive for the test
//! (a temporary directory, a schema to drop, or `()`):
//!
//! ```ignore
//! pulse_core::event_log_contract!(async {
//!     let dir = tempfile::tempdir().unwrap();
//!     (SqliteLog::open(dir.path()).await.unwrap(), dir)
//! });
//! ```
//!
//! Durable backends also call [`resumes_after_reopen`] and [`attempts_survive_reopen`]
//! with a function that opens the same store again. Checks use short real delays (never paused time: backends run threads and
//! servers), and never assert on how long anything took.

use std::time::Duration;

use crate::log::{Delivery, EventLog, GroupConfig};
use crate::{Event, Pattern};

mod append;
mod group;
mod reopen;

pub use append::*;
pub use group::*;
pub use reopen::*;

/// Generates one `#[tokio::test]` per contract check for the log made by `$make`, an async
/// expression returning `(log, guard)`.
#[macro_export]
macro_rules! event_log_contract {
    ($make:expr) => {
        $crate::event_log_contract!(@each $make;
            append_assigns_increasing_offsets,
            append_is_all_or_nothing,
            append_sets_missing_time,
            duplicate_ids_return_the_original_offset,
            a_batch_that_repeats_an_id_is_refused,
            read_pages_and_filters,
            watch_reports_appends,
            concurrent_appends_get_distinct_offsets,
            group_delivers_each_event_once,
            group_starting_at_latest_skips_history,
            group_receives_only_its_pattern,
            group_keeps_order_per_subject,
            nack_redelivers_after_the_delay,
            max_deliver_dead_letters_with_the_error,
            redrive_hands_a_dead_letter_back,
            unacknowledged_deliveries_are_redelivered,
            ensure_group_keeps_the_position,
            joining_with_another_pattern_is_a_conflict,
            a_join_applies_the_delivery_settings,
            set_group_pattern_changes_what_the_group_receives,
            unknown_and_invalid_groups_are_errors
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (log, _guard) = $make.await;
                $crate::contract::$check(&log).await;
            }
        )*
    };
}

pub(crate) fn event(ty: &str, subject: Option<&str>) -> Event {
    let mut event = Event::new(ty.to_owned());
    event.subject = subject.map(str::to_owned);
    event
}

pub(crate) fn group_config(pattern: &str) -> GroupConfig {
    let mut config =
        GroupConfig::new(Pattern::parse(pattern).expect("contract patterns are valid"));
    config.ack_wait = Duration::from_secs(30);
    config
}

pub(crate) async fn fetch_all<L: EventLog>(log: &L, group: &str) -> Vec<Delivery> {
    log.fetch_wait(group, 1000, Duration::from_millis(200))
        .await
        .expect("fetch")
}

pub(crate) fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.event.offset).collect()
}
