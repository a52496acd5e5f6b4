//! `pulse serve` on a shared log it cannot reach: the error names the server, exits 2,
//! and never prints the URL's password, whether the URL is in the file or comes from
//! `url_env`; under `--log-format json` every line it prints is a JSON object.

use std::process::Command;

const PASSWORD: &str = "S3cretPassw0rd";

/// Runs `pulse serve` with this `[log]` table (and `env`), until it exits.
fn serve_fails(log_table: &str, env: &[(&str, &str)], json: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pulse.toml");
    std::fs::write(&config, log_table).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulse"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG");
    if json {
        command.args(["--log-format", "json"]);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(2), "{log_table}: {all}");
    assert!(
        !all.contains(PASSWORD),
        "the password reached the output:\n{all}"
    );
    assert!(all.contains("failed to connect"), "{all}");
    if json {
        for line in all.lines().filter(|l| !l.trim().is_empty()) {
            let parsed: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(parsed["level"].is_string(), "{line}");
        }
        assert!(all.contains("\"ERROR\""), "the failure is logged: {all}");
    }
    all
}

/// Each URL given literally and through `url_env`, in both log formats.
fn check_every_way(backend: &str, url: &str) {
    let var = format!("PULSE_TEST_SECRET_URL_{}", backend.to_uppercase());
    for json in [false, true] {
        let literal = serve_fails(
            &format!("[log]\nbackend = \"{backend}\"\nurl = \"{url}\"\n"),
            &[],
            json,
        );
        assert!(
            literal.contains("127.0.0.1:5999"),
            "the server is named: {literal}"
        );
        serve_fails(
            &format!("[log]\nbackend = \"{backend}\"\nurl_env = \"{var}\"\n"),
            &[(&var, url)],
            json,
        );
    }
}

#[test]
fn an_unreachable_nats_url_keeps_its_password() {
    check_every_way("nats", &format!("nats://pulse:{PASSWORD}@127.0.0.1:5999"));
}

#[test]
fn an_unreachable_nats_url_keeps_its_token() {
    check_every_way("nats", &format!("nats://{PASSWORD}@127.0.0.1:5999"));
}

#[test]
fn an_unreachable_postgres_url_keeps_its_password() {
    check_every_way(
        "postgres",
        &format!("postgres://pulse:{PASSWORD}@127.0.0.1:5999/pulse?connect_timeout=5"),
    );
    check_every_way(
        "postgres",
        &format!("postgres://pulse@127.0.0.1:5999/pulse?password={PASSWORD}"),
    );
}

#[test]
fn a_refused_postgres_password_is_not_printed() {
    // A real server that refuses the password: its answer must not quote it either.
    let Some(url) = crate::support::server_url(
        "PULSE_TEST_POSTGRES_URL",
        "a_refused_postgres_password_is_not_printed",
    ) else {
        return;
    };
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return;
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let wrong = format!("postgres://pulse_nobody:{PASSWORD}@{host}");
    for json in [false, true] {
        serve_fails(
            &format!("[log]\nbackend = \"postgres\"\nurl = \"{wrong}\"\n"),
            &[],
            json,
        );
    }
}
