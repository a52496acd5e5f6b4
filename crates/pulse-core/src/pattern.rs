//! NATS-style type patterns: `*` matches exactly one segment, `>` one or more trailing
//! segments, so that the JetStream backend can map event types 1:1 onto subjects.

use std::fmt;

/// One token of a parsed pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// `>`: one or more trailing segments.
    Rest,
}

/// A parsed subscription pattern such as `health.*.heart_rate` or `health.>`.
///
/// ```
/// use pulse_core::Pattern;
/// let p: Pattern = "health.>".parse().unwrap();
/// assert!(p.matches("health.reading.heart_rate"));
/// assert!(!p.matches("health"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: Box<str>,
    tokens: Box<[Token]>,
}

/// Why a pattern was rejected; `position` is the 0-based byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("pattern is empty")]
    Empty,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("empty segment at position {position} in pattern {pattern:?}")]
    EmptySegment {
        /// The rejected pattern.
        pattern: String,
        /// Byte offset of the empty segment.
        position: usize,
    },
    /// A character outside `[A-Za-z0-9_-]`, or a wildcard inside a word.
    #[error("invalid character {character:?} at position {position} in pattern {pattern:?}: segments are [A-Za-z0-9_-], `*` or `>`")]
    InvalidCharacter {
        /// The rejected pattern.
        pattern: String,
        /// Byte offset of the character.
        position: usize,
        /// The character.
        character: char,
    },
    /// `>` somewhere other than the last segment.
    #[error("`>` at position {position} in pattern {pattern:?} must be the last segment")]
    RestNotLast {
        /// The rejected pattern.
        pattern: String,
        /// Byte offset of the `>`.
        position: usize,
    },
    /// The pattern is longer than [`Pattern::MAX_LEN`].
    #[error("pattern is {len} bytes long, the limit is {}", Pattern::MAX_LEN)]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// Whether `c` may appear in a type segment.
pub(crate) fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl Pattern {
    /// The longest pattern (and event type) accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Parses a pattern, naming the position of the first problem.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.len() > Self::MAX_LEN {
            return Err(PatternError::TooLong { len: pattern.len() });
        }
        let mut tokens = Vec::new();
        let mut start = 0;
        let segments: Vec<&str> = pattern.split('.').collect();
        let last = segments.len() - 1;
        for (i, segment) in segments.into_iter().enumerate() {
            let token = match segment {
                "" => {
                    return Err(PatternError::EmptySegment {
                        pattern: pattern.to_owned(),
                        position: start,
                    })
                }
                "*" => Token::One,
                ">" if i == last => Token::Rest,
                ">" => {
                    return Err(PatternError::RestNotLast {
                        pattern: pattern.to_owned(),
                        position: start,
                    })
                }
                word => {
                    if let Some((offset, character)) =
                        word.char_indices().find(|&(_, c)| !is_segment_char(c))
                    {
                        return Err(PatternError::InvalidCharacter {
                            pattern: pattern.to_owned(),
                            position: start + offset,
                            character,
                        });
                    }
                    Token::Literal(word.into())
                }
            };
            tokens.push(token);
            start += segment.len() + 1;
        }
        Ok(Self {
            source: pattern.into(),
            tokens: tokens.into(),
        })
    }

    /// Whether the event type `ty` matches this pattern.
    pub fn matches(&self, ty: &str) -> bool {
        let mut segments = ty.split('.');
        for token in self.tokens.iter() {
            match token {
                Token::Rest => return segments.next().is_some(),
                Token::One => {
                    if segments.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(word) => {
                    if segments.next() != Some(word) {
                        return false;
                    }
                }
            }
        }
        segments.next().is_none()
    }

    /// Whether the pattern has no wildcard, so it matches exactly one type.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = PatternError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious recursive definition, used as the reference.
    fn naive(pattern: &[&str], ty: &[&str]) -> bool {
        match (pattern.split_first(), ty.split_first()) {
            (None, None) => true,
            (Some((&">", _)), Some(_)) => true,
            (Some((&"*", p)), Some((_, t))) => naive(p, t),
            (Some((w, p)), Some((s, t))) => w == s && naive(p, t),
            _ => false,
        }
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c-d".to_owned())
        ]
    }

    fn pattern_segments() -> impl Strategy<Value = Vec<String>> {
        (
            prop::collection::vec(prop_oneof![3 => segment(), 1 => Just("*".to_owned())], 0..5),
            any::<bool>(),
        )
            .prop_map(|(mut v, rest)| {
                if rest || v.is_empty() {
                    v.push(">".to_owned());
                }
                v
            })
    }

    proptest! {
        #[test]
        fn matches_like_the_naive_reference(
            p in pattern_segments(),
            t in prop::collection::vec(segment(), 1..6),
        ) {
            let pattern = Pattern::parse(&p.join(".")).unwrap();
            let ps: Vec<&str> = p.iter().map(String::as_str).collect();
            let ts: Vec<&str> = t.iter().map(String::as_str).collect();
            prop_assert_eq!(pattern.matches(&t.join(".")), naive(&ps, &ts));
        }

        #[test]
        fn a_literal_pattern_matches_exactly_itself(t in prop::collection::vec(segment(), 1..6)) {
            let ty = t.join(".");
            let pattern = Pattern::parse(&ty).unwrap();
            prop_assert!(pattern.is_literal());
            prop_assert!(pattern.matches(&ty));
            let longer = format!("{ty}.x");
            prop_assert!(!pattern.matches(&longer));
        }
    }

    #[test]
    fn wildcards() {
        let p = Pattern::parse("health.*.heart_rate").unwrap();
        assert!(p.matches("health.reading.heart_rate"));
        assert!(!p.matches("health.heart_rate"));
        assert!(!p.matches("health.a.b.heart_rate"));
        let p = Pattern::parse(">").unwrap();
        assert!(p.matches("a"));
        assert!(p.matches("a.b.c"));
    }

    #[test]
    fn bad_patterns_name_the_position() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert!(matches!(
            Pattern::parse("health..x"),
            Err(PatternError::EmptySegment { position: 7, .. })
        ));
        assert!(matches!(
            Pattern::parse(".health"),
            Err(PatternError::EmptySegment { position: 0, .. })
        ));
        assert!(matches!(
            Pattern::parse("health."),
            Err(PatternError::EmptySegment { position: 7, .. })
        ));
        assert!(matches!(
            Pattern::parse("health.>.x"),
            Err(PatternError::RestNotLast { position: 7, .. })
        ));
        assert!(matches!(
            Pattern::parse("health.re*"),
            Err(PatternError::InvalidCharacter {
                position: 9,
                character: '*',
                ..
            })
        ));
        assert!(matches!(
            Pattern::parse("health reading"),
            Err(PatternError::InvalidCharacter {
                position: 6,
                character: ' ',
                ..
            })
        ));
        assert!(matches!(
            Pattern::parse(&"a".repeat(256)),
            Err(PatternError::TooLong { len: 256 })
        ));
        let message = Pattern::parse("a..b").unwrap_err().to_string();
        assert!(message.contains("position 2"), "{message}");
    }
}
