//! `[retention]` reaches the PostgreSQL log of `pulse serve`: two instances sharing one
//! schema, both pruning, keep the newest `max_events` events without an error in their
//! logs, and offsets continue after the pruned range; `max_bytes` keeps the newest events
//! that fit, and `/metrics` counts the bytes pruned.
//!
//! Runs when `PULSE_TEST_POSTGRES_URL` names a server; works in a schema of its own.

use std::time::Duration;

use crate::support::{
    admin, postgres_log, publish_numbered as publish, server_url, unique, DropSchema, Server,
};

/// (count, lowest, highest) offset of the stored events.
async fn stored(client: &tokio_postgres::Client, schema: &str) -> (i64, Option<i64>, Option<i64>) {
    let row = client
        .query_one(
            &format!("SELECT count(*), min(\"offset\"), max(\"offset\") FROM \"{schema}\".events"),
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_retention_to_the_postgres_log() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "serve_applies_retention_to_the_postgres_log",
    ) else {
        return;
    };
    let schema = format!("pulse_t_serveret_{:012x}", unique());
    let client = admin(&url).await;
    let _drop_schema = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let config = |name: &str| {
        format!(
            "{}[retention]\nmax_events = 10\n",
            postgres_log(&url, &schema, name)
        )
    };
    let one = Server::start("node-1", &config("node-1")).await;
    let two = Server::start("node-2", &config("node-2")).await;
    publish(&one, 0..30).await;
    publish(&two, 30..50).await;

    // The default pass interval is a few seconds: wait for one, however long it takes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while stored(&client, &schema).await != (10, Some(41), Some(50)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not keep the newest 10: {:?}",
            stored(&client, &schema).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publish(&one, 50..51).await;
    assert_eq!(
        stored(&client, &schema).await.2,
        Some(51),
        "offsets continue after the pruned range"
    );
    for instance in [&one, &two] {
        let lines = instance.log_lines();
        assert!(!lines.contains("retention pass failed"), "{lines}");
        assert!(!lines.contains("not applied"), "{lines}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_max_bytes_to_the_postgres_log() {
    let Some(url) = server_url(
        "PULSE_TEST_POSTGRES_URL",
        "serve_applies_max_bytes_to_the_postgres_log",
    ) else {
        return;
    };
    let schema = format!("pulse_t_servebytes_{:012x}", unique());
    let client = admin(&url).await;
    let _drop_schema = DropSchema {
        url: url.clone(),
        name: schema.clone(),
    };
    let config = format!(
        "{}[retention]\nmax_bytes = 500\n",
        postgres_log(&url, &schema, "node-1")
    );
    let server = Server::start("node-1", &config).await;
    publish(&server, 0..50).await;
    // Each event stores about 40 bytes (id, source, type, content type, data): the newest
    // ten or so fit in 500.
    let size_sql = format!(
        "SELECT count(*), coalesce(sum(\"{schema}\".pulse_stored_size(id, source, type, subject, \
         datacontenttype, dataschema, data, extensions)), 0)::bigint, max(\"offset\") \
         FROM \"{schema}\".events"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let row = client.query_one(&size_sql, &[]).await.unwrap();
        let (count, bytes, newest): (i64, i64, Option<i64>) = (row.get(0), row.get(1), row.get(2));
        if bytes <= 500 {
            assert!((5..=20).contains(&count), "{count} events in {bytes} bytes");
            assert_eq!(newest, Some(50), "the newest events are kept");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not bring the log under 500 bytes: {count} events, {bytes} bytes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The counter of pruned bytes grows as the schema's own total of them.
    let pruned_sql = format!("SELECT pruned_bytes FROM \"{schema}\".retention");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pruned: i64 = client.query_one(&pruned_sql, &[]).await.unwrap().get(0);
        let counted = server.metric("pulse_postgres_pruned_bytes_total").await;
        if pruned > 0 && counted == Some(pruned as f64) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pulse_postgres_pruned_bytes_total {counted:?}, retention.pruned_bytes {pruned}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!server.log_lines().contains("retention pass failed"));
}
