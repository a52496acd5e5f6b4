//! Secrets out of backend URLs, before a URL reaches a log line or an error message.
//!
//! A PostgreSQL or NATS URL can carry a password (`nats://user:pw@host`), a token
//! (`nats://token@host`) or a secret in its query (`?password=...`), and a libpq
//! connection string (`host=db password=...`) the same. Every place that prints a URL
//! prints [`redact_url`] of it; [`scrub`] is the second line of defence for text built by
//! a library that may have embedded the URL itself: it masks each secret of a known URL
//! wherever it appears.
//!
//! ```
//! use pulse_core::redact::redact_url;
//! assert_eq!(redact_url("nats://pulse:S3cret@db:4222"), "nats://pulse:***@db:4222");
//! assert_eq!(redact_url("postgres://app@db/pulse?password=x"), "postgres://app@db/pulse?password=***");
//! ```

use crate::LogError;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Query or connection-string keys whose value is a secret.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "token",
    "auth_token",
    "secret",
    "sslpassword",
    "nkey",
    "jwt",
    "creds",
];

/// Schemes whose user name alone is not a secret; elsewhere (NATS) a bare user part is
/// a token.
const NAMED_USER_SCHEMES: &[&str] = &["postgres", "postgresql"];

/// `url` with its password, token and secret parameters replaced by [`MASK`]. Several
/// comma-separated URLs (a NATS server list) are each redacted; a libpq key=value string
/// has its secret values masked.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        return redact_pairs(url);
    }
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

/// The secrets `url` carries (password, token, secret parameters), as they appear in it
/// and percent-decoded, for [`scrub`].
pub fn secrets_of(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && s != MASK {
            out.push(s.to_owned());
            let decoded = crate::percent::decode(s);
            if decoded != s {
                out.push(decoded);
            }
        }
    };
    if url.contains("://") {
        for part in url.split(',') {
            let Some((scheme, rest)) = part.split_once("://") else {
                continue;
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@') {
                match userinfo.split_once(':') {
                    Some((_, password)) => push(password),
                    None if !named_user(scheme) => push(userinfo),
                    None => {}
                }
            }
            if let Some((_, query)) = rest.split_once('?') {
                for pair in query.split('&') {
                    if let Some((key, value)) = pair.split_once('=') {
                        if is_secret_key(key) {
                            push(value);
                        }
                    }
                }
            }
        }
    } else {
        for word in url.split_whitespace() {
            if let Some((key, value)) = word.split_once('=') {
                if is_secret_key(key) {
                    push(value.trim_matches('\''));
                }
            }
        }
    }
    // Longest first, so that a secret containing another is masked whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `text` with every secret of `url` masked: for messages a library built, which may
/// quote the URL or a part of it.
pub fn scrub(text: &str, url: &str) -> String {
    let mut text = text.to_owned();
    for secret in secrets_of(url) {
        text = text.replace(&secret, MASK);
    }
    text
}

/// `err` with every secret of `url` masked in its text: what a backend's `connect`
/// returns, since the errors of the client libraries it wraps may quote the URL.
pub fn scrub_error(err: LogError, url: &str) -> LogError {
    match err {
        LogError::Unavailable(text) => LogError::Unavailable(scrub(&text, url)),
        LogError::Storage(text) => LogError::Storage(scrub(&text, url)),
        LogError::Incompatible(text) => LogError::Incompatible(scrub(&text, url)),
        LogError::InvalidGroup(text) => LogError::InvalidGroup(scrub(&text, url)),
        LogError::Unsupported(text) => LogError::Unsupported(scrub(&text, url)),
        other => other,
    }
}

fn named_user(scheme: &str) -> bool {
    NAMED_USER_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|s| s.eq_ignore_ascii_case(key))
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            None if named_user(scheme) => format!("{userinfo}@{host}"),
            None => format!("{MASK}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_key(key) => format!("{key}={MASK}"),
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&");
            match fragment {
                Some(f) => format!("{path}?{query}#{f}"),
                None => format!("{path}?{query}"),
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Masks the secret values of a libpq `key=value` connection string. A quoted value with
/// spaces is masked up to its closing quote.
fn redact_pairs(text: &str) -> String {
    let mut out = Vec::new();
    let mut words = text.split(' ').peekable();
    while let Some(word) = words.next() {
        match word.split_once('=') {
            Some((key, value)) if is_secret_key(key.trim()) => {
                out.push(format!("{key}={MASK}"));
                // A quoted value may run over several words.
                let quoted = value.starts_with('\'');
                let closed = value.len() > 1 && value.ends_with('\'');
                if quoted && !closed {
                    for next in words.by_ref() {
                        if next.ends_with('\'') {
                            break;
                        }
                    }
                }
            }
            _ => out.push(word.to_owned()),
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_masked() {
        let cases = [
            (
                "nats://pulse:S3cretPassw0rd@127.0.0.1:5999",
                "nats://pulse:***@127.0.0.1:5999",
            ),
            ("nats://t0ken@127.0.0.1:4222", "nats://***@127.0.0.1:4222"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "nats://a:b@h1:4222,nats://c:d@h2:4222",
                "nats://a:***@h1:4222,nats://c:***@h2:4222",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            (
                "postgres://app:p%40ss@db:5432/pulse?sslmode=require&password=x&application_name=p",
                "postgres://app:***@db:5432/pulse?sslmode=require&password=***&application_name=p",
            ),
            (
                "postgresql://app:pw@db/x?Password=y#frag",
                "postgresql://app:***@db/x?Password=***#frag",
            ),
            (
                "host=db user=app password=hunter2 dbname=pulse",
                "host=db user=app password=*** dbname=pulse",
            ),
            (
                "host=db password='two words' dbname=pulse",
                "host=db password=*** dbname=pulse",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn a_password_with_an_at_sign_is_masked_whole() {
        assert_eq!(
            redact_url("nats://u:p@ss@host:4222"),
            "nats://u:***@host:4222"
        );
    }

    #[test]
    fn scrub_masks_a_known_urls_secrets_anywhere() {
        let url = "postgres://app:p%40ss@db/pulse?password=other";
        let text = "cannot connect as app with p%40ss (p@ss), other=other";
        let scrubbed = scrub(text, url);
        assert!(!scrubbed.contains("p@ss"), "{scrubbed}");
        assert!(!scrubbed.contains("p%40ss"), "{scrubbed}");
        assert!(!scrubbed.contains("other"), "{scrubbed}");
        assert!(scrubbed.contains("app"), "{scrubbed}");
        assert_eq!(scrub("nothing here", "nats://h:4222"), "nothing here");
    }
}
