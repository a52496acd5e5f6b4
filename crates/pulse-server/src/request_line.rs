//! Leniency for the characters people type raw in a URI: `curl '.../v1/events?type=health.>'`
//! sends the `>` as is, and the `http` crate under hyper refuses `"`, `<`, `>` and `` ` ``
//! in a request target, so hyper would answer an empty 400 before Pulse sees the request.
//! Since type patterns end in `>`, the connection percent-encodes those four bytes in the
//! target of each HTTP/1 request line as it reads it (`>` becomes `%3E`, which is what a
//! careful client sends anyway), and hyper parses the request as meant.
//!
//! Only the request line is touched: the scan starts when a connection is waiting for a
//! new request head and stops at the first space or line end after the target, so headers
//! and bodies pass unchanged.

/// Where the scan is in a request line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the end of the method (empty lines before a request are skipped).
    Method(usize),
    /// In the request target.
    Target,
    /// Past the target: nothing more to do until the next request head.
    Done,
}

/// A method longer than this is not a method: leave the bytes alone.
const MAX_METHOD: usize = 32;

/// The scan of one connection's request lines.
#[derive(Debug)]
pub(crate) struct RequestLine {
    state: State,
}

impl RequestLine {
    /// A scan waiting for a request line.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Method(0),
        }
    }

    /// A new request head starts with the next byte read.
    pub(crate) fn restart(&mut self) {
        self.state = State::Method(0);
    }

    /// Whether bytes read now may need rewriting.
    pub(crate) fn active(&self) -> bool {
        self.state != State::Done
    }

    /// Scans `bytes`, the next ones read; returns them rewritten when a byte had to be
    /// encoded, `None` when they can be passed on as they are.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for (i, &b) in bytes.iter().enumerate() {
            let encoded = match self.state {
                State::Done => None,
                State::Method(n) => {
                    self.state = match b {
                        b' ' if n > 0 => State::Target,
                        b'\r' | b'\n' if n == 0 => State::Method(0),
                        _ if n >= MAX_METHOD || !b.is_ascii_graphic() => State::Done,
                        _ => State::Method(n + 1),
                    };
                    None
                }
                State::Target => match b {
                    b' ' | b'\r' | b'\n' => {
                        self.state = State::Done;
                        None
                    }
                    b'"' => Some(b"%22"),
                    b'<' => Some(b"%3C"),
                    b'>' => Some(b"%3E"),
                    b'`' => Some(b"%60"),
                    _ => None,
                },
            };
            match (encoded, &mut out) {
                (Some(e), Some(o)) => o.extend_from_slice(e),
                (Some(e), None) => {
                    let mut o = Vec::with_capacity(bytes.len() + 8);
                    o.extend_from_slice(&bytes[..i]);
                    o.extend_from_slice(e);
                    out = Some(o);
                }
                (None, Some(o)) => o.push(b),
                (None, None) => {}
            }
            if self.state == State::Done && out.is_none() {
                return None;
            }
            if self.state == State::Done {
                if let Some(o) = &mut out {
                    o.extend_from_slice(&bytes[i + 1..]);
                }
                return out;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(chunks: &[&[u8]]) -> Vec<u8> {
        let mut line = RequestLine::new();
        let mut out = Vec::new();
        for c in chunks {
            match line.scan(c) {
                Some(r) => out.extend(r),
                None => out.extend_from_slice(c),
            }
        }
        out
    }

    #[test]
    fn raw_pattern_characters_in_the_target_are_encoded() {
        assert_eq!(
            rewrite(&[b"GET /v1/events?type=health.> HTTP/1.1\r\nx-a: <b>\r\n\r\n"]),
            b"GET /v1/events?type=health.%3E HTTP/1.1\r\nx-a: <b>\r\n\r\n"
        );
        assert_eq!(
            rewrite(&[b"GET /a?q=\"<`", b">\" HTTP/1.1\r\n"]),
            b"GET /a?q=%22%3C%60%3E%22 HTTP/1.1\r\n"
        );
    }

    #[test]
    fn only_the_request_line_is_touched() {
        let plain = b"POST /v1/events HTTP/1.1\r\ncontent-length: 3\r\n\r\n\"<>";
        assert_eq!(rewrite(&[plain]), plain.to_vec());
        // Split anywhere, the result is the same.
        let raw = b"\r\nGET /x?t=a.> HTTP/1.1\r\nh: >\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(
                rewrite(&[&raw[..cut], &raw[cut..]]),
                b"\r\nGET /x?t=a.%3E HTTP/1.1\r\nh: >\r\n\r\n",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_a_request_line_pass_unchanged() {
        let binary = [0u8, 1, 2, b'>', b' ', b'>'];
        assert_eq!(rewrite(&[&binary]), binary.to_vec());
        let long = [b'A'; 40].iter().chain(b" />").copied().collect::<Vec<_>>();
        assert_eq!(rewrite(&[&long]), long);
    }
}
