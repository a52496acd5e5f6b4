//! Lenient percent-decoding, as CloudEvents binary-mode header values and URL userinfo use
//! it: `%XX` becomes its byte, anything else (a lone `%`, a bad escape) stays as written,
//! and bytes that are not UTF-8 are replaced. One decoder for the server's codec and for
//! the redaction of backend URLs, so both read a value the same way.

/// The text `text` stands for.
pub fn decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                // Two hex digits make one byte (at most 0xff).
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_become_bytes_and_the_rest_stays() {
        assert_eq!(decode("plain"), "plain");
        assert_eq!(decode("a%20b%2Fc"), "a b/c");
        assert_eq!(decode("caf%C3%A9"), "café");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%ff"), "\u{fffd}");
    }
}
