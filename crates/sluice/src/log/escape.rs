//! The one place where log fields are escaped: JSON strings for the JSON formats of both the
//! L4 connection log and the edge access log, and nginx's `\xHH` escaping of request lines,
//! referers and user agents in the `combined` format. No I/O, no formatting of whole lines.

use std::fmt::Write;

/// `v` as a JSON string literal: quotes and backslashes escaped, control characters and DEL
/// (0x7f) as `\u00XX`, so a hostile value cannot break a line or a terminal.
pub(crate) fn json_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Appends `bytes` escaped as nginx escapes variables in its text log formats: `"`, `\`,
/// control bytes, DEL and every non-ASCII byte become `\xHH`.
pub(crate) fn nginx_escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_quotes_backslashes_controls_and_del() {
        assert_eq!(
            json_str("a\"b\\c\n\u{7f}é"),
            "\"a\\\"b\\\\c\\u000a\\u007fé\""
        );
    }

    #[test]
    fn nginx_escapes_like_nginx() {
        let mut s = String::new();
        nginx_escape_into(&mut s, b"GET /\"x\\\x01\x7f\xc3\xa9 ok");
        assert_eq!(s, "GET /\\x22x\\x5C\\x01\\x7F\\xC3\\xA9 ok");
    }
}
