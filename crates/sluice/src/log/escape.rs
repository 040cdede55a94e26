//! The one place where log fields are escaped: JSON strings for the JSON formats of both the
//! L4 connection log and the edge access log, and nginx's `\xHH` escaping of request lines,
//! referers and user agents in the `combined` format. No I/O, no formatting of whole lines.

use std::fmt::Write;

/// `v` as a JSON string literal: quotes and backslashes escaped, control characters and DEL
/// (0x7f) as `\u00XX`, so a hostile value cannot break a line or a terminal.
pub(crate) fn json_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    json_escape_into(&mut out, v);
    out.push('"');
    out
}

/// Appends `v` escaped as the inside of a JSON string (no quotes around it).
pub(crate) fn json_escape_into(out: &mut String, v: &str) {
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
}

/// Appends one log variable's value: in a text line (`json` false) escaped as nginx does, an
/// absent or empty value as `-`; inside a JSON string (`json`) escaped for it (invalid UTF-8
/// replaced), an absent value as nothing (nginx's `escape=json`).
pub(crate) fn push_var(out: &mut String, v: Option<&[u8]>, json: bool) {
    match (v.filter(|b| !b.is_empty()), json) {
        (None, false) => out.push('-'),
        (None, true) => {}
        (Some(b), false) => nginx_escape_into(out, b),
        (Some(b), true) => json_escape_into(out, &String::from_utf8_lossy(b)),
    }
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
    fn variables_are_escaped_per_mode() {
        let mut s = String::new();
        push_var(&mut s, None, false);
        push_var(&mut s, Some(b""), true);
        push_var(&mut s, Some(b"a\"\n"), false);
        s.push('|');
        push_var(&mut s, Some(b"a\"\n\xff"), true);
        assert_eq!(s, "-a\\x22\\x0A|a\\\"\\u000a\u{fffd}");
    }

    #[test]
    fn nginx_escapes_like_nginx() {
        let mut s = String::new();
        nginx_escape_into(&mut s, b"GET /\"x\\\x01\x7f\xc3\xa9 ok");
        assert_eq!(s, "GET /\\x22x\\x5C\\x01\\x7F\\xC3\\xA9 ok");
    }
}
