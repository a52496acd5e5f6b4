//! Subscription patterns (`health.*`, `health.>`), as API keys, groups, webhooks and
//! durability rules parse them. The input is a pattern, optionally a newline and an event
//! type. A parsed pattern displays as written and re-parses equal (also through serde),
//! and it matches a type exactly when the obvious recursive definition says so.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pulse_core::Pattern;

/// The reference: NATS subject matching, segment by segment.
fn naive(pattern: &[&str], ty: &[&str]) -> bool {
    match (pattern.split_first(), ty.split_first()) {
        (None, None) => true,
        (Some((&">", _)), Some(_)) => true,
        (Some((&"*", p)), Some((_, t))) => naive(p, t),
        (Some((w, p)), Some((s, t))) => w == s && naive(p, t),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, ty) = text.split_once('\n').unwrap_or((text, text));
    let pattern = match Pattern::parse(source) {
        Ok(pattern) => pattern,
        Err(err) => {
            // The error names a position inside the pattern.
            let _ = err.to_string();
            return;
        }
    };
    assert_eq!(pattern.to_string(), source, "a pattern displays as written");
    assert_eq!(Pattern::parse(&pattern.to_string()).as_ref(), Ok(&pattern));
    let json = serde_json::to_string(&pattern).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Pattern>(&json).ok().as_ref(),
        Some(&pattern)
    );
    let segments: Vec<&str> = source.split('.').collect();
    if pattern.is_literal() {
        assert!(pattern.matches(source), "a literal pattern matches itself");
    }
    let types: Vec<&str> = ty.split('.').collect();
    assert_eq!(
        pattern.matches(ty),
        naive(&segments, &types),
        "{source:?} against {ty:?}"
    );
});
