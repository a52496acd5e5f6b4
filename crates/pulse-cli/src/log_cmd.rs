//! `pulse log`: inspect a durable event log offline, on its data directory.
//!
//! Reading commands (`stats`, `tail`, `replay`, `dlq list`) open the log read-only, so
//! they also work beside a running server; `dlq redrive` opens it for writing and
//! needs the server stopped. Events are printed as JSON lines, one object per event:
//! `{"offset": N, "event": <CloudEvent in the JSON format>}`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use pulse_core::{EventLog, Pattern, ReadQuery, StoredEvent};
use pulse_sqlite::{SqliteLog, SqliteOptions};

/// Events read per page.
const PAGE: usize = 5_000;

/// Where the log is.
#[derive(clap::Args, Clone)]
pub(crate) struct DataDir {
    /// The data directory holding pulse.db.
    #[arg(long, env = "PULSE_DATA_DIR", default_value = "./pulse-data")]
    data_dir: PathBuf,
}

/// Inspect a durable event log.
#[derive(clap::Subcommand)]
pub(crate) enum LogCommand {
    /// Size, offsets, times, consumer groups and dead letters of the log.
    Stats {
        #[command(flatten)]
        dir: DataDir,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The newest events, optionally of a type pattern such as `health.>`.
    Tail {
        #[command(flatten)]
        dir: DataDir,
        /// Only event types matching this pattern.
        pattern: Option<String>,
        /// How many events to print.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing new events as they are appended.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print events in offset order from an offset or a time, as JSON lines.
    Replay {
        #[command(flatten)]
        dir: DataDir,
        /// Start at this offset (inclusive).
        #[arg(long, required_unless_present = "since")]
        from_offset: Option<u64>,
        /// Only events whose time is at or after this (RFC 3339, or an age such as 15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Stop after this offset (inclusive).
        #[arg(long)]
        to_offset: Option<u64>,
        /// Only event types matching this pattern.
        #[arg(long = "type")]
        pattern: Option<String>,
        /// Print at most this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Dead letters: list or redrive.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// Dead-letter commands.
#[derive(clap::Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only this consumer group's.
        #[arg(long)]
        group: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Hand a dead letter back to its group; it is delivered again when the group next
    /// runs and leaves the store once acknowledged. Needs the server stopped.
    Redrive {
        #[command(flatten)]
        dir: DataDir,
        /// The dead letter's id (see `dlq list`).
        id: u64,
    },
}

pub(crate) fn run(command: LogCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(dispatch(command));
    match result {
        Err(err) if is_broken_pipe(&err) => Ok(()),
        other => other,
    }
}

async fn dispatch(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Stats { dir, json } => stats(&open_read(&dir).await?, json).await,
        LogCommand::Tail {
            dir,
            pattern,
            lines,
            follow,
        } => {
            let pattern = pattern.as_deref().map(parse_pattern).transpose()?;
            tail(&open_read(&dir).await?, pattern, lines, follow).await
        }
        LogCommand::Replay {
            dir,
            from_offset,
            since,
            to_offset,
            pattern,
            limit,
        } => {
            let query = ReplayQuery {
                from_offset: from_offset.unwrap_or(1),
                since: since.as_deref().map(parse_since).transpose()?,
                to_offset,
                pattern: pattern.as_deref().map(parse_pattern).transpose()?,
                limit,
            };
            replay(&open_read(&dir).await?, query).await
        }
        LogCommand::Dlq(DlqCommand::List {
            dir,
            group,
            limit,
            json,
        }) => dlq_list(&open_read(&dir).await?, group.as_deref(), limit, json).await,
        LogCommand::Dlq(DlqCommand::Redrive { dir, id }) => {
            let log = SqliteLog::open(&dir.data_dir).await.with_context(|| {
                format!("cannot open the event log in {}", dir.data_dir.display())
            })?;
            log.redrive(id)
                .await
                .with_context(|| format!("cannot redrive dead letter {id}"))?;
            log.close().await?;
            println!("dead letter {id} handed back to its group");
            Ok(())
        }
    }
}

async fn open_read(dir: &DataDir) -> anyhow::Result<SqliteLog> {
    SqliteLog::open_with(&dir.data_dir, SqliteOptions::default().read_only())
        .await
        .with_context(|| format!("cannot open the event log in {}", dir.data_dir.display()))
}

fn parse_pattern(text: &str) -> anyhow::Result<Pattern> {
    Pattern::parse(text).with_context(|| format!("invalid type pattern {text:?}"))
}

/// An RFC 3339 time, or an age before now such as `90s`, `15m`, `2h`, `7d`.
fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let age = text.char_indices().last().and_then(|(i, unit)| {
        let n: i64 = text[..i].parse().ok()?;
        let seconds = match unit {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            'd' => n * 86_400,
            _ => return None,
        };
        Some(chrono::Duration::seconds(seconds))
    });
    match age {
        Some(age) => Ok(Utc::now() - age),
        None => pulse_core::event::parse_time(text).map_err(|e| {
            anyhow::anyhow!("--since must be an RFC 3339 time or an age like 15m: {e}")
        }),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn event_line(stored: &StoredEvent) -> String {
    // Written by hand so that `offset` comes first on every line.
    format!(
        "{{\"offset\":{},\"event\":{}}}",
        stored.offset,
        stored.event.to_json_string()
    )
}

async fn stats(log: &SqliteLog, json: bool) -> anyhow::Result<()> {
    let stats = log.stats().await?;
    // Lag as the server reports it (`/v1/groups`, `pulse_consumer_lag_events`): only the
    // events after the committed offset that the group's pattern matches.
    let mut groups = Vec::new();
    for g in log.groups().await? {
        let lag = pulse_core::group_lag(log, &g).await?;
        groups.push((g, lag));
    }
    if json {
        let groups: Vec<_> = groups
            .iter()
            .map(|(g, lag)| {
                serde_json::json!({
                    "name": g.name,
                    "pattern": g.pattern.as_str(),
                    "committed": g.committed,
                    "lag": lag.events,
                })
            })
            .collect();
        let mut value = serde_json::to_value(&stats)?;
        value["groups"] = groups.into();
        println!("{value}");
        return Ok(());
    }
    let time = |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
    println!("log            {}", stats.path.display());
    println!("schema         v{}", stats.schema_version);
    println!(
        "size           {:.1} MB (+ {:.1} MB write-ahead log)",
        stats.file_bytes as f64 / 1e6,
        stats.wal_bytes as f64 / 1e6
    );
    println!(
        "events         {} ({:.1} MB as stored, what retention's max_bytes counts)",
        stats.events,
        stats.stored_bytes as f64 / 1e6
    );
    println!(
        "offsets        {} ..= {}",
        stats.first_offset, stats.last_offset
    );
    println!(
        "times          {} .. {}",
        time(stats.first_time),
        time(stats.last_time)
    );
    println!("dead letters   {}", stats.dead_letters);
    if groups.is_empty() {
        println!("groups         none");
    }
    for (g, lag) in groups {
        println!(
            "group          {} ({}) committed {} lag {}{}",
            g.name,
            g.pattern,
            g.committed,
            lag.events,
            if lag.is_capped() { "+" } else { "" }
        );
    }
    Ok(())
}

async fn tail(
    log: &SqliteLog,
    pattern: Option<Pattern>,
    lines: usize,
    follow: bool,
) -> anyhow::Result<()> {
    let last = log.last_offset().await?;
    // Look back in growing windows until enough matching events are found.
    let mut window = (lines as u64).max(1) * 4;
    let newest = loop {
        let start = last.saturating_sub(window);
        let query = ReadQuery {
            after: start,
            limit: PAGE,
            pattern: pattern.clone(),
            since: None,
        };
        let mut found = Vec::new();
        let mut cursor = query;
        loop {
            let page = log.read(cursor.clone()).await?;
            let Some(tail) = page.last() else { break };
            cursor.after = tail.offset;
            found.extend(page);
            if found.len() > lines {
                found.drain(..found.len() - lines);
            }
        }
        if found.len() >= lines || start == 0 {
            break found;
        }
        window = window.saturating_mul(4);
    };
    let mut out = std::io::stdout().lock();
    let mut after = last;
    for stored in &newest {
        writeln!(out, "{}", event_line(stored))?;
    }
    out.flush()?;
    drop(out);
    if !follow {
        return Ok(());
    }
    loop {
        let tip = log.last_offset().await?;
        let page = log
            .read(ReadQuery {
                after,
                limit: PAGE,
                pattern: pattern.clone(),
                since: None,
            })
            .await?;
        match page.last() {
            Some(last) => after = last.offset,
            None => {
                // Everything up to `tip` was looked at and nothing matched.
                after = after.max(tip);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        }
        let mut out = std::io::stdout().lock();
        for stored in &page {
            writeln!(out, "{}", event_line(stored))?;
        }
        out.flush()?;
    }
}

struct ReplayQuery {
    from_offset: u64,
    since: Option<DateTime<Utc>>,
    to_offset: Option<u64>,
    pattern: Option<Pattern>,
    limit: Option<u64>,
}

async fn replay(log: &SqliteLog, q: ReplayQuery) -> anyhow::Result<()> {
    let mut after = q.from_offset.saturating_sub(1);
    if let Some(since) = q.since {
        match log.first_offset_since(since).await? {
            Some(first) => after = after.max(first - 1),
            None => return Ok(()),
        }
    }
    let mut remaining = q.limit.unwrap_or(u64::MAX);
    let query = ReadQuery {
        after,
        limit: PAGE,
        pattern: q.pattern,
        since: q.since,
    };
    let mut slices = std::pin::pin!(log.replay(query, q.to_offset).await?);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(slice) = slices.next().await {
        for stored in slice? {
            if remaining == 0 {
                break;
            }
            writeln!(out, "{}", event_line(&stored))?;
            remaining -= 1;
        }
        if remaining == 0 {
            break;
        }
    }
    out.flush()?;
    Ok(())
}

async fn dlq_list(
    log: &SqliteLog,
    group: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let letters = log.dead_letters(group, 0, limit).await?;
    let mut out = std::io::stdout().lock();
    if !json {
        writeln!(
            out,
            "{:>6}  {:<16} {:>10}  {:<28} {:>8}  {:<20} {:<20} error",
            "id", "group", "offset", "type", "attempts", "first failure", "last failure"
        )?;
    }
    for l in &letters {
        if json {
            let line = serde_json::json!({
                "id": l.id,
                "group": l.group,
                "offset": l.event.offset,
                "attempts": l.attempts,
                "error": l.error,
                "first_failure": l.first_failure.to_rfc3339(),
                "last_failure": l.last_failure.to_rfc3339(),
                "event": l.event.event.to_json_value(),
            });
            writeln!(out, "{line}")?;
        } else {
            let short = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
            writeln!(
                out,
                "{:>6}  {:<16} {:>10}  {:<28} {:>8}  {:<20} {:<20} {}",
                l.id,
                l.group,
                l.event.offset,
                l.event.event.ty,
                l.attempts,
                short(l.first_failure),
                short(l.last_failure),
                l.error.replace('\n', " ")
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        let t = parse_since("2024-05-01T10:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-01T10:00:00+00:00");
        let age = Utc::now() - parse_since("2h").unwrap();
        assert!((age.num_minutes() - 120).abs() <= 1);
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("5x").is_err());
    }
}
