//! One line for an error and its causes, for messages that must say why (a driver's
//! "error connecting to server" alone does not).

/// The text of an error and of its sources, joined by `": "`, skipping a source whose text
/// the message already contains (many errors print their source themselves).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner detail")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped: {0}")]
    struct Repeats(#[source] Inner);

    #[test]
    fn chain_joins_sources_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner detail");
        assert_eq!(error_chain(&Repeats(Inner)), "wrapped: inner detail");
    }
}
