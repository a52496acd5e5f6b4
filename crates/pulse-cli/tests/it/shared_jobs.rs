//! Three `pulse serve` processes sharing PostgreSQL, then NATS, with one aggregation job
//! ticking every second: each tick runs on exactly one instance (the runs each instance
//! reports under `GET /v1/jobs/{name}/runs` never share a tick and together cover every
//! tick; on PostgreSQL the lease table names the same instance), every instance serves the
//! same aggregates, equal to the readings counted once — also after a retried publish —
//! and after one instance is killed with SIGKILL the others keep ticking and aggregating.
//!
//! Each backend's test runs when its URL variable names a server, in a schema or prefix
//! of its own, and says it is skipped otherwise.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::support::{
    admin, nats_log, postgres_log, server_url, unique, DropNatsLog, DropSchema, Server,
};

const JOB: &str = "hr";

/// `GET path` on `server`, which must answer 200 with JSON.
async fn get(server: &Server, path: &str) -> Value {
    let response = reqwest::get(format!("{}{path}", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path} on {}", server.name);
    response.json().await.unwrap()
}

/// The 5m and 1h rows of `user`, as the API returns them.
async fn aggregates(server: &Server, user: &str) -> Value {
    let mut both = Vec::new();
    for window in ["5m", "1h"] {
        let body = get(
            server,
            &format!("/v1/aggregates?user_id={user}&metric=heart_rate&window={window}"),
        )
        .await;
        both.push(body["aggregates"].clone());
    }
    Value::Array(both)
}

/// One reading as an event's data.
fn reading(user: &str, value: u32, minute: u32) -> Value {
    json!({"user_id": user, "metric": "heart_rate", "value": value, "unit": "/min",
           "recorded_at": format!("2026-01-01T00:{minute:02}:00Z")})
}

/// Round `round` of readings: per user, single-reading events and one array event.
fn round_events(round: u32) -> (Vec<Value>, Vec<(String, u32, u32)>) {
    let mut events = Vec::new();
    let mut readings = Vec::new();
    for u in 0..4 {
        let user = format!("u{u}");
        let mine: Vec<(u32, u32)> = (0..5)
            .map(|i| (60 + round * 10 + u * 3 + i, (round * 7 + i * 4 + u) % 60))
            .collect();
        for &(value, minute) in &mine[..3] {
            events.push(reading(&user, value, minute));
        }
        events.push(Value::Array(
            mine[3..]
                .iter()
                .map(|&(value, minute)| reading(&user, value, minute))
                .collect(),
        ));
        readings.extend(mine.into_iter().map(|(v, m)| (user.clone(), v, m)));
    }
    let events = events
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            json!({"specversion": "1.0", "id": format!("r{round}-{i}"), "source": "test",
                   "type": "health.reading.heart_rate", "data": data})
        })
        .collect();
    (events, readings)
}

async fn publish(base: &str, events: &[Value]) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events.to_vec()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
}

/// (count, sum) per window start of `user`, 5m then 1h, computed from the readings.
fn expected(readings: &[(String, u32, u32)], user: &str) -> Vec<Vec<(String, u64, f64)>> {
    [5, 60]
        .into_iter()
        .map(|size| {
            let mut windows: BTreeMap<u32, (u64, f64)> = BTreeMap::new();
            for (_, value, minute) in readings.iter().filter(|(u, _, _)| u == user) {
                let w = windows.entry(minute / size * size).or_default();
                w.0 += 1;
                w.1 += f64::from(*value);
            }
            windows
                .into_iter()
                .map(|(start, (n, sum))| (format!("2026-01-01T00:{start:02}:00Z"), n, sum))
                .collect()
        })
        .collect()
}

fn observed(aggregates: &Value) -> Vec<Vec<(String, u64, f64)>> {
    aggregates
        .as_array()
        .unwrap()
        .iter()
        .map(|rows| {
            rows.as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["window_start"].as_str().unwrap().to_owned(),
                        r["count"].as_u64().unwrap(),
                        r["sum"].as_f64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Waits until every instance serves the expected aggregates of every user, then checks
/// that they serve identical rows (all statistics, not just counts).
async fn converge(instances: &[&Server], readings: &[(String, u32, u32)]) {
    for user in ["u0", "u1", "u2", "u3"] {
        let want = expected(readings, user);
        let mut last = Vec::new();
        for _ in 0..1200 {
            last.clear();
            for instance in instances {
                last.push(aggregates(instance, user).await);
            }
            if last.iter().all(|a| observed(a) == want) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (instance, aggregates) in instances.iter().zip(&last) {
            assert_eq!(
                observed(aggregates),
                want,
                "{user} on {}: {aggregates}",
                instance.name
            );
        }
        assert!(
            last.windows(2).all(|w| w[0] == w[1]),
            "instances serve different rows for {user}: {last:?}"
        );
    }
}

/// The ticks each instance ran (ok or failed), with the earlier ticks folded into each.
struct Runs {
    /// Tick → instance that ran it, for every run any instance recorded.
    by_tick: HashMap<DateTime<Utc>, String>,
    /// Ticks folded into a later run (after a stall), which need no run of their own.
    coalesced: Vec<(DateTime<Utc>, u64)>,
    /// The last tick up to which every instance has recorded what it ran.
    settled: DateTime<Utc>,
    /// The earliest tick still in every history that may have been cut.
    from: DateTime<Utc>,
}

fn tick(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// Reads every instance's runs at a moment none of them is running the job, so that
/// every tick before each one's next tick is either in its history or was not its own.
async fn runs(instances: &[&Server]) -> Runs {
    'retry: for _ in 0..600 {
        let mut next = Vec::new();
        for instance in instances {
            let jobs = get(instance, "/v1/jobs").await;
            let job = &jobs["jobs"][0];
            if job["running"] == true || job["next_run"].is_null() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue 'retry;
            }
            next.push(tick(&job["next_run"]));
        }
        let settled = *next.iter().min().unwrap() - chrono::Duration::seconds(1);
        let mut by_tick: HashMap<DateTime<Utc>, String> = HashMap::new();
        let mut coalesced = Vec::new();
        let mut from = DateTime::<Utc>::MIN_UTC;
        for instance in instances {
            let body = get(instance, &format!("/v1/jobs/{JOB}/runs?limit=100")).await;
            let records = body["runs"].as_array().unwrap();
            if records.len() == 100 {
                // The history is full: older ticks may have left it.
                let oldest = records.iter().filter_map(|r| r["scheduled_at"].as_str());
                from = from.max(oldest.map(|t| t.parse().unwrap()).min().unwrap());
            }
            for r in records {
                if r["trigger"] != "scheduled" || r["status"] == "missed" {
                    continue;
                }
                let at = tick(&r["scheduled_at"]);
                if let Some(other) = by_tick.insert(at, instance.name.clone()) {
                    panic!("tick {at} ran on {other} and on {}", instance.name);
                }
                coalesced.push((at, r["coalesced"].as_u64().unwrap()));
            }
        }
        return Runs {
            by_tick,
            coalesced,
            settled,
            from,
        };
    }
    panic!("the job never stopped running on some instance");
}

impl Runs {
    /// Checks that every tick from the first run to `settled` ran on one instance (or was
    /// folded into a later run); returns how many ticks that is.
    fn check_every_tick_ran_once(&self) -> usize {
        let first = self
            .by_tick
            .keys()
            .copied()
            .filter(|t| *t >= self.from)
            .min()
            .expect("some tick ran");
        let second = chrono::Duration::seconds(1);
        let folded = |t: DateTime<Utc>| {
            self.coalesced
                .iter()
                .any(|&(at, n)| at > t && at - second * i32::try_from(n).unwrap() <= t)
        };
        let mut ticks = 0;
        let mut t = first;
        while t <= self.settled {
            assert!(
                self.by_tick.contains_key(&t) || folded(t),
                "tick {t} ran nowhere"
            );
            ticks += 1;
            t += second;
        }
        ticks
    }

    /// How many ticks each instance ran.
    fn per_instance(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for name in self.by_tick.values() {
            *counts.entry(name.clone()).or_default() += 1;
        }
        counts
    }
}

/// The scenario, on three instances started with `log_table` (named node-1..3).
/// `holder` looks up the lease holder of a tick where the backend exposes it by name.
async fn scenario<F, Fut>(log_table: impl Fn(&str) -> String, holder: F)
where
    F: Fn(DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let config = |name: &str| {
        format!(
            "{}\n[[jobs]]\nname = \"{JOB}\"\nschedule = \"every 1s\"\n\
             windows = [\"5m\", \"1h\"]\ntz = \"UTC\"\nsource_pattern = \"health.reading.>\"\n",
            log_table(name)
        )
    };
    let publisher = Server::start("node-1", &config("node-1")).await;
    let mut doomed = Server::start("node-2", &config("node-2")).await;
    let survivor = Server::start("node-3", &config("node-3")).await;
    let all = [&publisher, &doomed, &survivor];

    let (events, mut readings) = round_events(0);
    publish(&publisher.base, &events).await;
    converge(&all, &readings).await;
    // The same batch again (a client retrying) stores nothing and counts nothing again.
    publish(&survivor.base, &events).await;
    let (events, more) = round_events(1);
    publish(&doomed.base, &events).await;
    readings.extend(more);
    converge(&all, &readings).await;

    // Several ticks later nothing has been counted twice, whoever ran them.
    let before = runs(&all).await;
    let target = before.settled + chrono::Duration::seconds(3);
    let mut after = runs(&all).await;
    for _ in 0..600 {
        if after.settled >= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = runs(&all).await;
    }
    assert!(after.settled >= target, "the job stopped ticking");
    converge(&all, &readings).await;
    let ticks = after.check_every_tick_ran_once();
    println!(
        "{ticks} ticks, each run once; runs per instance: {:?}",
        after.per_instance()
    );
    for (&at, name) in &after.by_tick {
        if let Some(held_by) = holder(at).await {
            assert_eq!(&held_by, name, "the lease of tick {at} names its runner");
        }
    }

    // An instance dies mid-flight; the others keep ticking and aggregating.
    doomed.kill();
    let killed_at = runs(&[&publisher, &survivor]).await.settled;
    let (events, more) = round_events(2);
    publish(&publisher.base, &events).await;
    readings.extend(more);
    converge(&[&publisher, &survivor], &readings).await;
    let later = runs(&[&publisher, &survivor]).await;
    assert!(
        later.by_tick.keys().any(|t| *t > killed_at),
        "the survivors ran ticks after the kill"
    );
    drop(doomed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_run_each_tick_once_and_share_aggregates() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "postgres_instances_run_each_tick_once_and_share_aggregates",
    ) else {
        return;
    };
    let schema = format!("pulse_t_jobs3_{:012x}", unique());
    let _guard = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let log_table = |name: &str| postgres_log(&url, &schema, name);
    let client = admin(&url).await;
    let holders =
        format!("SELECT holder FROM \"{schema}\".job_leases WHERE job = $1 AND tick = $2");
    let holder = |at: DateTime<Utc>| {
        let (client, holders) = (&client, &holders);
        async move {
            let row = client.query_one(holders, &[&JOB, &at]).await.unwrap();
            Some(row.get::<_, String>(0))
        }
    };
    scenario(log_table, holder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_instances_run_each_tick_once_and_share_aggregates() {
    let Some(url) = server_url(
        "PULSE_TEST_NATS_URL",
        "nats_instances_run_each_tick_once_and_share_aggregates",
    ) else {
        return;
    };
    let prefix = format!("pulsetest-jobs3-{:012x}", unique());
    let _cleanup = DropNatsLog(url.clone(), pulse_nats::NatsOptions::new(prefix.clone()));
    let log_table = |_: &str| nats_log(&url, &prefix);
    // NATS names lease holders by connection, not by instance name: the runs each
    // instance reports are the record.
    scenario(log_table, |_| async { None }).await;
}
