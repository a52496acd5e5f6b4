//! API keys and the rights they carry.
//!
//! Keys come from the configuration. Each has `publish` and `subscribe` type patterns and
//! an `admin` flag (groups, dead letters, webhooks, jobs). With no key configured the API
//! is open, for local development. A request names its key with
//! `Authorization: Bearer <key>`; streaming endpoints also take `?api_key=` because
//! browsers cannot set headers on `EventSource` or `WebSocket`. Keys are compared in
//! constant time and never logged: a [`Caller`] prints as its key's name.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use pulse_core::Pattern;

use crate::error::ApiError;
use crate::state::AppState;

/// One configured key.
pub struct ApiKey {
    name: String,
    secret: Vec<u8>,
    publish: Vec<Pattern>,
    subscribe: Vec<Pattern>,
    admin: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// A key with its rights.
    pub fn new(
        name: String,
        secret: String,
        publish: Vec<Pattern>,
        subscribe: Vec<Pattern>,
        admin: bool,
    ) -> Self {
        Self {
            name,
            secret: secret.into_bytes(),
            publish,
            subscribe,
            admin,
        }
    }

    /// The key's name (safe to log).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The configured keys.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    keys: Arc<Vec<Arc<ApiKey>>>,
}

impl KeyRing {
    /// Checks that no secret is used twice.
    pub fn new(keys: Vec<ApiKey>) -> Result<Self, String> {
        for (i, a) in keys.iter().enumerate() {
            if keys[..i].iter().any(|b| b.secret == a.secret) {
                return Err(format!(
                    "keys {:?} and another key have the same secret",
                    a.name
                ));
            }
        }
        Ok(Self {
            keys: Arc::new(keys.into_iter().map(Arc::new).collect()),
        })
    }

    /// Whether the API is open (no keys configured).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Finds the key with this secret, comparing every key in constant time.
    pub fn find(&self, secret: &[u8]) -> Option<Arc<ApiKey>> {
        let mut found = None;
        for key in self.keys.iter() {
            if constant_time_eq(&key.secret, secret) {
                found = Some(Arc::clone(key));
            }
        }
        found
    }

    /// Who is calling, from a bearer secret (or none).
    pub fn authenticate(&self, secret: Option<&[u8]>) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller::Open);
        }
        let secret = secret.ok_or(ApiError::MissingApiKey)?;
        self.find(secret)
            .map(Caller::Key)
            .ok_or(ApiError::InvalidApiKey)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a key granted `granted` may use `requested` (a type or a pattern): every type
/// `requested` matches is matched by `granted`.
pub(crate) fn covers(granted: &Pattern, requested: &str) -> bool {
    let g: Vec<&str> = granted.as_str().split('.').collect();
    let r: Vec<&str> = requested.split('.').collect();
    for (i, gs) in g.iter().enumerate() {
        if *gs == ">" {
            return i < r.len();
        }
        let Some(rs) = r.get(i) else { return false };
        match (*gs, *rs) {
            (_, ">") => return false,
            ("*", _) => {}
            (a, b) if a == b => {}
            _ => return false,
        }
    }
    g.len() == r.len()
}

/// The authenticated caller of a request.
#[derive(Clone)]
pub enum Caller {
    /// No keys are configured: everything is allowed.
    Open,
    /// A configured key.
    Key(Arc<ApiKey>),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("open"),
            Self::Key(k) => f.write_str(&k.name),
        }
    }
}

impl Caller {
    /// Allows publishing an event of type `ty`.
    pub fn require_publish(&self, ty: &str) -> Result<(), ApiError> {
        match self {
            Self::Open => Ok(()),
            Self::Key(k) if k.publish.iter().any(|p| covers(p, ty)) => Ok(()),
            Self::Key(k) => Err(ApiError::Forbidden(format!(
                "key {:?} lacks the publish right for type {ty:?}",
                k.name
            ))),
        }
    }

    /// Allows reading or subscribing to `pattern`.
    pub fn require_subscribe(&self, pattern: &Pattern) -> Result<(), ApiError> {
        match self {
            Self::Open => Ok(()),
            Self::Key(k) if k.subscribe.iter().any(|p| covers(p, pattern.as_str())) => Ok(()),
            Self::Key(k) => Err(ApiError::Forbidden(format!(
                "key {:?} lacks the subscribe right for pattern {:?}",
                k.name,
                pattern.as_str()
            ))),
        }
    }

    /// Allows managing groups, dead letters, webhooks and jobs.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Self::Open => Ok(()),
            Self::Key(k) if k.admin => Ok(()),
            Self::Key(k) => Err(ApiError::Forbidden(format!(
                "key {:?} lacks the admin right",
                k.name
            ))),
        }
    }
}

/// Where a request's key is: the bearer header, else `api_key` in the query string of
/// streaming endpoints.
fn secret_of(parts: &Parts) -> Option<Vec<u8>> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let bytes = value.as_bytes();
        let stripped = bytes
            .strip_prefix(b"Bearer ")
            .or_else(|| bytes.strip_prefix(b"bearer "))
            .unwrap_or(b"");
        return Some(stripped.trim_ascii().to_vec());
    }
    let path = parts.uri.path();
    if path != "/v1/stream" && path != "/v1/ws" {
        return None;
    }
    let query = parts.uri.query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "api_key").then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.keys.is_open() {
            return Ok(Self::Open);
        }
        state.keys.authenticate(secret_of(parts).as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn coverage_follows_pattern_semantics() {
        assert!(covers(&p("health.>"), "health.reading.hr"));
        assert!(covers(&p("health.>"), "health.*"));
        assert!(covers(&p("health.>"), "health.>"));
        assert!(!covers(&p("health.>"), "health"));
        assert!(!covers(&p("health.*"), "health.>"));
        assert!(covers(&p("health.*"), "health.x"));
        assert!(covers(&p("health.*"), "health.*"));
        assert!(!covers(&p("health.*"), "health.x.y"));
        assert!(!covers(&p("health.x"), "health.*"));
        assert!(covers(&p(">"), ">"));
        assert!(!covers(&p("a.b"), "a"));
    }

    #[test]
    fn rights_are_checked_and_named() {
        let ring = KeyRing::new(vec![ApiKey::new(
            "ingest".into(),
            "0123456789abcdef".into(),
            vec![p("health.>")],
            vec![p("health.reading.*")],
            false,
        )])
        .unwrap();
        assert!(matches!(
            ring.authenticate(None),
            Err(ApiError::MissingApiKey)
        ));
        assert!(matches!(
            ring.authenticate(Some(b"nope")),
            Err(ApiError::InvalidApiKey)
        ));
        let caller = ring.authenticate(Some(b"0123456789abcdef")).unwrap();
        assert!(caller.require_publish("health.x").is_ok());
        let err = caller.require_publish("billing.x").unwrap_err();
        assert!(err.to_string().contains("publish") && err.to_string().contains("billing.x"));
        assert!(caller.require_subscribe(&p("health.reading.hr")).is_ok());
        assert!(caller.require_subscribe(&p("health.>")).is_err());
        assert!(caller
            .require_admin()
            .unwrap_err()
            .to_string()
            .contains("admin"));
        assert_eq!(format!("{caller:?}"), "ingest");
    }

    #[test]
    fn query_keys_are_decoded() {
        assert_eq!(percent_decode("a%2Bb+c%zz"), b"a+b c%zz");
        assert_eq!(percent_decode("%4"), b"%4");
    }
}
