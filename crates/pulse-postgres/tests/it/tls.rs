//! TLS to the server as libpq's `sslmode` and `sslrootcert` describe it, checked on the
//! server's side in `pg_stat_ssl`. The test server's certificate (`ssl_cert_file`) is
//! trusted as a root, as an operator would trust their database's CA.

use pulse_core::{Event, EventLog, ReadQuery};
use pulse_postgres::tls;

use crate::support::{self, Schema};

/// Whether the connection made from `url` is encrypted, or why it failed.
async fn encrypted(url: &str) -> Result<bool, String> {
    let (config, tls) = tls::connection(url)?;
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| pulse_core::error_chain(&e))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// The file of the server's certificate when the server offers TLS (`ssl = on`). The
/// test reads it as its trusted root, so it must be readable here.
async fn server_certificate(admin: &tokio_postgres::Client) -> Option<String> {
    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        return None;
    }
    let cert: String = admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        std::fs::metadata(&cert).is_ok(),
        "the test reads the server's certificate {cert} as its trusted root"
    );
    Some(cert)
}

/// The test server as key=value settings, naming it by `host`.
fn settings(url: &str, host: &str) -> String {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    format!("host={host} port={port} user={user} dbname={db} connect_timeout=10")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_and_sslrootcert_mean_what_they_mean_in_libpq() {
    let Some(url) = support::url("sslmode_and_sslrootcert_mean_what_they_mean_in_libpq") else {
        return;
    };
    let admin = support::admin(&url).await;
    let local = settings(&url, "localhost");
    assert_eq!(
        encrypted(&format!("{local} sslmode=disable")).await,
        Ok(false)
    );
    let Some(cert) = server_certificate(&admin).await else {
        // A server without TLS: `prefer` connects in the clear, `require` refuses.
        assert_eq!(encrypted(&local).await, Ok(false));
        let err = encrypted(&format!("{local} sslmode=require"))
            .await
            .unwrap_err();
        assert!(err.contains("TLS") || err.contains("SSL"), "{err}");
        return;
    };
    // Encrypted by default (`prefer`) and with `require`, without checking the certificate.
    assert_eq!(encrypted(&local).await, Ok(true));
    assert_eq!(
        encrypted(&format!("{local} sslmode=require")).await,
        Ok(true)
    );
    // The URL form, with the root percent-encoded.
    let root = cert.replace('/', "%2F");
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={root}&connect_timeout=10",
        url.split('?')
            .next()
            .unwrap()
            .replace("127.0.0.1", "localhost")
    );
    assert_eq!(encrypted(&verified).await, Ok(true));

    // The certificate names `localhost`: verify-full refuses another name for the host,
    // verify-ca checks only the chain.
    let by_address = settings(&url, "127.0.0.1");
    let err = encrypted(&format!(
        "{by_address} sslmode=verify-full sslrootcert={cert}"
    ))
    .await
    .unwrap_err();
    assert!(err.contains("certificate not valid for name"), "{err}");
    let ca_only = format!("{by_address} sslmode=verify-ca sslrootcert={cert}");
    assert_eq!(encrypted(&ca_only).await, Ok(true));

    // A root that did not sign the server's certificate is refused, in every mode given one
    // (prefer and require check the chain when sslrootcert is set, as libpq does for require).
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_root.path(), stranger.cert.pem()).unwrap();
    let other = other_root.path().display();
    for mode in ["prefer", "require", "verify-ca", "verify-full"] {
        let err = encrypted(&format!("{local} sslmode={mode} sslrootcert={other}"))
            .await
            .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{mode}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_runs_over_a_verified_connection() {
    let Some(url) = support::url("the_log_runs_over_a_verified_connection") else {
        return;
    };
    let admin = support::admin(&url).await;
    let Some(cert) = server_certificate(&admin).await else {
        println!("the test server does not offer TLS: the log's TLS path is not exercised");
        return;
    };
    let verified = format!(
        "{} sslmode=verify-full sslrootcert={cert}",
        settings(&url, "localhost")
    );
    let schema = Schema::new(url, "tls");
    let mut options = schema.options();
    let instance = format!("tls-{:012x}", fastrand::u64(..) >> 16);
    options.instance = Some(instance.clone());
    let log = pulse_postgres::PostgresLog::connect(&verified, options)
        .await
        .unwrap_or_else(|e| panic!("cannot open the log over verify-full: {e}"));
    let appended = log
        .append(vec![Event::new("health.reading")])
        .await
        .unwrap();
    let read = log.read(ReadQuery::after(0, 10)).await.unwrap();
    assert_eq!(read.last().map(|e| e.offset), Some(appended[0].offset));
    // Every connection the instance has open is encrypted.
    let row = admin
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&format!("pulse:{instance}")],
        )
        .await
        .unwrap();
    let (connections, all_encrypted): (i64, bool) = (row.get(0), row.get(1));
    assert!(connections >= 1, "{connections} connections");
    assert!(all_encrypted);
    log.close().await.unwrap();
}
