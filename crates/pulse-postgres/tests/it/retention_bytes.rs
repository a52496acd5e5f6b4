//! Retention by stored size (`max_bytes`): exactly the newest events within the budget,
//! dead-lettered events kept and not counted, the byte totals right with several instances
//! and after migrating a schema from before them.

use std::collections::BTreeMap;
use std::time::Duration;

use pulse_core::{Event, EventLog, GroupConfig, NackOutcome, Pattern};
use pulse_postgres::{PostgresLog, PostgresOptions};

use crate::retention::{limited, offsets, NEVER};
use crate::support::{self, eventually, Schema};

/// An event's stored size as documented in the `retention` module, computed here from the
/// event as published, not by the SQL function: the octets of id, source, type, subject,
/// datacontenttype, dataschema and data, plus the extensions as jsonb prints them.
fn stored_size(event: &Event) -> i64 {
    let optional = |text: Option<&str>| text.map_or(0, str::len);
    let extensions = if event.extensions.is_empty() {
        0
    } else {
        jsonb_text(&event.extensions).len()
    };
    let size = event.id.len()
        + event.source.len()
        + event.ty.len()
        + optional(event.subject.as_deref())
        + optional(event.datacontenttype.as_deref())
        + optional(event.dataschema.as_deref())
        + event.data.as_ref().map_or(0, |d| d.len())
        + extensions;
    i64::try_from(size).unwrap()
}

/// How jsonb prints an object of ASCII strings and integers: shorter keys first, then
/// bytewise; `"key": value` pairs separated by `, `.
fn jsonb_text(object: &BTreeMap<String, serde_json::Value>) -> String {
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    let pairs: Vec<String> = keys
        .iter()
        .map(|key| format!("{:?}: {}", key, object[*key]))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Event `i` of a mixed batch: payloads from none to a few kilobytes, multi-byte
/// subjects and sources, some content types, schemas and extensions.
fn mixed_event(rng: &mut fastrand::Rng, i: usize) -> Event {
    let ty = if i % 2 == 0 { "a.b" } else { "a.longer_type" };
    let mut event = Event::new(ty).with_id(format!("m{i}"));
    if i % 3 == 0 {
        event = event.with_subject(format!("user-é{i}"));
    }
    if i % 7 == 0 {
        event = event.with_source(format!("/sensors/ü{}", i % 11));
    }
    if i % 4 != 0 {
        let len = if i % 29 == 0 { 3000 } else { rng.usize(0..400) };
        event = event.with_data("application/octet-stream", vec![0xa5_u8; len]);
    }
    if i % 5 == 0 {
        event.dataschema = Some(format!("https://schemas.example/{i}"));
    }
    if i % 6 == 0 {
        event = event
            .with_extension("traceparent", format!("00-{i:032x}-01"))
            .with_extension("n", i as i64);
    }
    event
}

/// Appends `events` in chunks; returns their sizes by offset.
async fn append_sized(log: &PostgresLog, events: &[Event]) -> BTreeMap<u64, i64> {
    let mut sizes = BTreeMap::new();
    for chunk in events.chunks(25) {
        let appended = log.append(chunk.to_vec()).await.unwrap();
        for (event, appended) in chunk.iter().zip(appended) {
            assert!(!appended.duplicate);
            sizes.insert(appended.offset, stored_size(event));
        }
    }
    sizes
}

/// What `max_bytes = budget` keeps, naively: walking from the newest event, the events
/// not in `held` while their sizes sum to at most `budget`; plus every held one.
fn kept_by_bytes(sizes: &BTreeMap<u64, i64>, held: &[u64], budget: i64) -> Vec<u64> {
    let mut kept: Vec<u64> = held.to_vec();
    let mut sum = 0;
    for (&offset, &size) in sizes.iter().rev() {
        if held.contains(&offset) {
            continue;
        }
        sum += size;
        if sum > budget {
            break;
        }
        kept.push(offset);
    }
    kept.sort_unstable();
    kept
}

/// The sum of the sizes of the newest events from `from` on.
fn bytes_from(sizes: &BTreeMap<u64, i64>, from: u64) -> i64 {
    sizes.range(from..).map(|(_, size)| size).sum()
}

/// The two byte totals of the log, read directly: the stored size of every event
/// appended, and that of every event at or below the pruned range, with the range's end.
async fn totals(schema: &Schema) -> (i64, i64, u64) {
    let row = schema
        .admin()
        .await
        .query_one(
            &format!(
                "SELECT a.bytes, r.pruned_bytes, r.pruned_through \
                 FROM \"{0}\".appended a, \"{0}\".retention r",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let pruned_through: i64 = row.get(2);
    (
        row.get(0),
        row.get(1),
        u64::try_from(pruned_through).unwrap(),
    )
}

/// Checks both totals against `sizes`, every event appended by offset.
async fn assert_totals(schema: &Schema, sizes: &BTreeMap<u64, i64>) {
    let (appended, pruned, pruned_through) = totals(schema).await;
    assert_eq!(appended, sizes.values().sum::<i64>(), "appended bytes");
    let expected: i64 = sizes.range(..=pruned_through).map(|(_, size)| size).sum();
    assert_eq!(
        pruned, expected,
        "bytes through the pruned offset {pruned_through}"
    );
}

/// Options keeping `max_bytes`, with passes made by the test itself.
fn by_bytes(schema: &Schema, max_bytes: i64) -> PostgresOptions {
    let mut options = limited(schema, NEVER);
    options.retention.max_bytes = Some(u64::try_from(max_bytes).unwrap());
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_keeps_exactly_the_newest_events_within_the_budget() {
    let Some(url) = support::url("max_bytes_keeps_exactly_the_newest_events_within_the_budget")
    else {
        return;
    };
    let schema = Schema::new(url, "retbytes");
    let mut rng = fastrand::Rng::with_seed(8);
    let events: Vec<Event> = (0..200).map(|i| mixed_event(&mut rng, i)).collect();
    let plain = schema.open().await;
    let sizes = append_sized(&plain, &events).await;
    assert_totals(&schema, &sizes).await;

    // A budget of exactly the newest 57 events keeps them: "at most" is inclusive.
    let exact = bytes_from(&sizes, 144);
    let log = schema.open_with(by_bytes(&schema, exact)).await;
    assert!(log.apply_retention().await.unwrap() > 0);
    assert_eq!(offsets(&log).await, (144..=200).collect::<Vec<_>>());
    assert_eq!(offsets(&log).await, kept_by_bytes(&sizes, &[], exact));
    log.close().await.unwrap();

    // One byte less drops event 144 too; one byte less than from the 3,000-byte event
    // 175 on drops it alone; then a budget of a few events.
    for budget in [exact - 1, bytes_from(&sizes, 175) - 1, 1500] {
        let log = schema.open_with(by_bytes(&schema, budget)).await;
        log.apply_retention().await.unwrap();
        assert_eq!(
            offsets(&log).await,
            kept_by_bytes(&sizes, &[], budget),
            "budget {budget}"
        );
        log.close().await.unwrap();
    }
    assert!(offsets(&plain).await.len() < 57);
    assert_totals(&schema, &sizes).await;

    // The background task does the same as new events arrive, and combines with
    // max_events: an event goes when either limit says so.
    let more: Vec<Event> = (200..260).map(|i| mixed_event(&mut rng, i)).collect();
    let mut options = by_bytes(&schema, 6000);
    options.prune_interval = Duration::from_millis(50);
    options.retention.max_events = Some(12);
    let log = schema.open_with(options).await;
    let mut sizes = sizes;
    sizes.extend(append_sized(&log, &more).await);
    let within_budget = kept_by_bytes(&sizes, &[], 6000);
    let expected: Vec<u64> = within_budget
        .into_iter()
        .filter(|&o| o > 260 - 12)
        .collect();
    eventually("the background task applying both limits", || async {
        offsets(&log).await == expected
    })
    .await;
    assert_totals(&schema, &sizes).await;
    log.close().await.unwrap();
    plain.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_keeps_dead_lettered_events_without_counting_them() {
    let Some(url) = support::url("max_bytes_keeps_dead_lettered_events_without_counting_them")
    else {
        return;
    };
    let schema = Schema::new(url, "retbytesdl");
    let mut options = by_bytes(&schema, i64::MAX);
    let log = schema.open_with(options.clone()).await;
    let mut config = GroupConfig::new(Pattern::parse("a.>").unwrap());
    config.max_deliver = 1;
    log.ensure_group("g", config).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let events: Vec<Event> = (0..60)
        .map(|i| {
            let event = mixed_event(&mut rng, i).with_id(format!("d{i}"));
            // Event 55 (index 54) is large: were it counted, fewer events would be kept.
            if i == 54 {
                event.with_data("application/octet-stream", vec![1_u8; 2000])
            } else {
                event
            }
        })
        .collect();
    let sizes = append_sized(&log, &events).await;
    let held = [2, 55];
    dead_letter(&log, "g", &held).await;
    log.close().await.unwrap();

    // Every non-held event from 40 on, exactly: 55 is kept on top of the budget.
    let budget: i64 = sizes
        .range(40..)
        .filter(|(o, _)| !held.contains(o))
        .map(|(_, size)| size)
        .sum();
    options.retention.max_bytes = Some(u64::try_from(budget).unwrap());
    let log = schema.open_with(options.clone()).await;
    log.apply_retention().await.unwrap();
    let expected: Vec<u64> = [2].into_iter().chain(40..=60).collect();
    assert_eq!(offsets(&log).await, expected);
    assert_eq!(offsets(&log).await, kept_by_bytes(&sizes, &held, budget));
    let letters = log.dead_letters(None, 0, 10).await.unwrap();
    let lettered: Vec<u64> = letters.iter().map(|l| l.event.offset).collect();
    assert_eq!(lettered, held, "the dead letters keep their events");
    log.close().await.unwrap();

    // A budget too small for any event leaves the held ones only.
    options.retention.max_bytes = Some(0);
    let log = schema.open_with(options).await;
    log.apply_retention().await.unwrap();
    assert_eq!(offsets(&log).await, held);
    assert_eq!(log.last_offset().await.unwrap(), 60);
    log.close().await.unwrap();
}

/// Fetches from `group` until each of `offsets` is dead-lettered (max_deliver 1),
/// acknowledging every other event.
async fn dead_letter(log: &PostgresLog, group: &str, offsets: &[u64]) {
    let mut lettered = 0;
    for _ in 0..100 {
        if lettered == offsets.len() {
            return;
        }
        for delivery in log.fetch(group, 100).await.unwrap() {
            let offset = delivery.event.offset;
            if offsets.contains(&offset) {
                let outcome = log.nack(group, offset, Duration::ZERO, "broken").await;
                assert!(matches!(outcome, Ok(NackOutcome::DeadLettered(_))));
                lettered += 1;
            } else {
                log.ack(group, &[offset]).await.unwrap();
            }
        }
    }
    panic!("could not dead-letter {offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_pruning_everything_keeps_offsets_and_the_total() {
    let Some(url) = support::url("max_bytes_pruning_everything_keeps_offsets_and_the_total") else {
        return;
    };
    let schema = Schema::new(url, "retbytesall");
    // Every event is bigger than the budget, the newest one alone too.
    let log = schema.open_with(by_bytes(&schema, 5)).await;
    let mut rng = fastrand::Rng::with_seed(5);
    let events: Vec<Event> = (0..40).map(|i| mixed_event(&mut rng, i)).collect();
    let mut sizes = append_sized(&log, &events).await;
    assert_eq!(log.apply_retention().await.unwrap(), 40);
    assert!(offsets(&log).await.is_empty());
    assert_eq!(log.last_offset().await.unwrap(), 40);
    log.close().await.unwrap();

    // After reconnecting, appends continue the offsets and the bytes total.
    let reopened = schema.open().await;
    let next = Event::new("a.b").with_data("text/plain", "after");
    let appended = reopened.append(vec![next.clone()]).await.unwrap();
    assert_eq!(appended[0].offset, 41, "offsets are never reused");
    sizes.insert(41, stored_size(&next));
    assert_totals(&schema, &sizes).await;
    // A stored id adds nothing; the new event next to it does.
    let last = Event::new("a.b").with_subject("ünïcode");
    let appended = reopened.append(vec![next, last.clone()]).await.unwrap();
    assert_eq!((appended[0].offset, appended[0].duplicate), (41, true));
    assert_eq!((appended[1].offset, appended[1].duplicate), (42, false));
    sizes.insert(42, stored_size(&last));
    assert_totals(&schema, &sizes).await;
    reopened.close().await.unwrap();

    // The totals say the log holds exactly events 41 and 42: their size keeps both.
    let both = sizes[&41] + sizes[&42];
    let log = schema.open_with(by_bytes(&schema, both)).await;
    assert_eq!(log.apply_retention().await.unwrap(), 0);
    assert_eq!(offsets(&log).await, [41, 42]);
    log.close().await.unwrap();
    let log = schema.open_with(by_bytes(&schema, both - 1)).await;
    assert_eq!(log.apply_retention().await.unwrap(), 1);
    assert_eq!(offsets(&log).await, [42]);
    assert_totals(&schema, &sizes).await;
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_totals_stay_right_with_two_instances_appending_and_pruning() {
    let Some(url) = support::url("the_bytes_totals_stay_right_with_two_instances") else {
        return;
    };
    let schema = Schema::new(url, "retbytesshared");
    let budget = 20_000;
    let mut options = by_bytes(&schema, budget);
    options.prune_interval = Duration::from_millis(20);
    let a = schema.open_with(options.clone()).await;
    let b = schema.open_with(options).await;
    let mut rng = fastrand::Rng::with_seed(11);
    let events: Vec<Event> = (0..600).map(|i| mixed_event(&mut rng, i)).collect();
    // Both append while both prune.
    let (from_a, from_b) = tokio::join!(
        append_sized(&a, &events[..300]),
        append_sized(&b, &events[300..])
    );
    let mut sizes = from_a;
    sizes.extend(from_b);
    assert_eq!(
        sizes.keys().copied().collect::<Vec<_>>(),
        (1..=600).collect::<Vec<_>>()
    );
    let expected = kept_by_bytes(&sizes, &[], budget);
    eventually("both pruners down to the budget", || async {
        offsets(&a).await == expected
    })
    .await;
    assert_totals(&schema, &sizes).await;
    a.close().await.unwrap();
    b.close().await.unwrap();

    // Reconnected: the totals continue from where the pruned log left them.
    let c = schema.open_with(by_bytes(&schema, 9000)).await;
    let later: Vec<Event> = (600..650).map(|i| mixed_event(&mut rng, i)).collect();
    sizes.extend(append_sized(&c, &later).await);
    assert_totals(&schema, &sizes).await;
    c.apply_retention().await.unwrap();
    assert_eq!(offsets(&c).await, kept_by_bytes(&sizes, &[], 9000));
    assert_totals(&schema, &sizes).await;
    c.close().await.unwrap();
}

/// Brings `schema` to version 7, as the Pulse before retention by size left it: the
/// migration files are immutable, so applying 0001 to 0007 is that version exactly.
async fn create_at_version_7(schema: &Schema) {
    const OLD: [(i32, &str, &str); 7] = [
        (
            1,
            "events",
            include_str!("../../migrations/0001_events.sql"),
        ),
        (
            2,
            "groups",
            include_str!("../../migrations/0002_groups.sql"),
        ),
        (3, "jobs", include_str!("../../migrations/0003_jobs.sql")),
        (
            4,
            "append_function",
            include_str!("../../migrations/0004_append_function.sql"),
        ),
        (
            5,
            "aggregates",
            include_str!("../../migrations/0005_aggregates.sql"),
        ),
        (
            6,
            "retention",
            include_str!("../../migrations/0006_retention.sql"),
        ),
        (
            7,
            "aggregates_by_job",
            include_str!("../../migrations/0007_aggregates_by_job.sql"),
        ),
    ];
    let mut admin = schema.admin().await;
    let tx = admin.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; SET LOCAL search_path TO \"{0}\";
         CREATE TABLE pulse_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema.name
    ))
    .await
    .unwrap();
    for (version, name, sql) in OLD {
        tx.batch_execute(sql).await.unwrap();
        tx.execute(
            "INSERT INTO pulse_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Stores `events` at offsets 1, 2, ... through the version-7 append function.
async fn append_at_version_7(schema: &Schema, events: &[Event]) {
    let column = |f: fn(&Event) -> Option<String>| events.iter().map(f).collect::<Vec<_>>();
    let admin = schema.admin().await;
    admin
        .batch_execute(&format!("SET search_path TO \"{}\"", schema.name))
        .await
        .unwrap();
    let times = vec![chrono::Utc::now(); events.len()];
    let data: Vec<Option<Vec<u8>>> = events
        .iter()
        .map(|e| e.data.as_ref().map(|d| d.to_vec()))
        .collect();
    let extensions: Vec<Option<serde_json::Value>> = events
        .iter()
        .map(|e| {
            (!e.extensions.is_empty())
                .then(|| serde_json::Value::Object(e.extensions.clone().into_iter().collect()))
        })
        .collect();
    admin
        .execute(
            "SELECT pulse_append(1, 'old', $1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &column(|e| Some(e.id.clone())),
                &column(|e| Some(e.source.to_string())),
                &column(|e| Some(e.ty.to_string())),
                &column(|e| e.subject.clone()),
                &times,
                &column(|e| e.datacontenttype.as_deref().map(str::to_owned)),
                &column(|e| e.dataschema.clone()),
                &data,
                &extensions,
            ],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_a_version_7_schema_sets_the_bytes_totals() {
    let Some(url) = support::url("migrating_a_version_7_schema_sets_the_bytes_totals") else {
        return;
    };
    let schema = Schema::new(url, "retbytesmigrate");
    create_at_version_7(&schema).await;
    let mut rng = fastrand::Rng::with_seed(13);
    let events: Vec<Event> = (0..8).map(|i| mixed_event(&mut rng, i)).collect();
    append_at_version_7(&schema, &events).await;
    // As version 7 retention leaves it: 2 and 3 pruned, 1 held by a dead letter.
    schema
        .admin()
        .await
        .batch_execute(&format!(
            "SET search_path TO \"{}\";
             INSERT INTO dead_letters (group_name, \"offset\", error, attempts, first_failure,
                                       last_failure)
             VALUES ('g', 1, 'broken', 1, now(), now());
             DELETE FROM events WHERE \"offset\" IN (2, 3);
             UPDATE retention SET pruned_through = 3;",
            schema.name
        ))
        .await
        .unwrap();
    let mut sizes: BTreeMap<u64, i64> = [1, 4, 5, 6, 7, 8]
        .into_iter()
        .map(|o| (o, stored_size(&events[usize::try_from(o).unwrap() - 1])))
        .collect();

    let log = schema.open_with(limited(&schema, NEVER)).await;
    let version: i32 = schema
        .admin()
        .await
        .query_one(
            &format!(
                "SELECT max(version) FROM \"{}\".pulse_migrations",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 8);
    // The totals count the events stored at migration time: all of them appended, event
    // 1 (held) at or below the pruned range.
    assert_eq!(totals(&schema).await, (sizes.values().sum(), sizes[&1], 3));
    assert_totals(&schema, &sizes).await;

    // An append still running the version-7 function as the migration committed stores
    // an event without counting it; the next append counts it too.
    let late = Event::new("a.b").with_id("late").with_subject("ä");
    schema
        .admin()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{}\".events (\"offset\", id, source, type, subject, time) \
                 VALUES (9, $1, $2, $3, $4, now())",
                schema.name
            ),
            &[
                &late.id,
                &late.source.as_ref(),
                &late.ty.as_ref(),
                &late.subject,
            ],
        )
        .await
        .unwrap();
    sizes.insert(9, stored_size(&late));
    let next = Event::new("a.b").with_data("text/plain", "new");
    let appended = log.append(vec![next.clone()]).await.unwrap();
    assert_eq!(appended[0].offset, 10);
    sizes.insert(10, stored_size(&next));
    assert_totals(&schema, &sizes).await;
    log.close().await.unwrap();

    // Retention by size works on the migrated rows, the held event kept and not counted.
    let budget = bytes_from(&sizes, 7);
    let log = schema.open_with(by_bytes(&schema, budget)).await;
    assert_eq!(log.apply_retention().await.unwrap(), 3);
    assert_eq!(offsets(&log).await, [1, 7, 8, 9, 10]);
    assert_eq!(offsets(&log).await, kept_by_bytes(&sizes, &[1], budget));
    assert_totals(&schema, &sizes).await;
    log.close().await.unwrap();

    // A version-7 step (rolling upgrade) cannot move the pruned range without the bytes.
    let raised = schema
        .admin()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".retention SET pruned_through = 9",
                schema.name
            ),
            &[],
        )
        .await;
    let code = raised.unwrap_err().code().cloned();
    assert_eq!(code, Some(tokio_postgres::error::SqlState::CHECK_VIOLATION));
}
