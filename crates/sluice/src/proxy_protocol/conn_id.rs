//! The connection id both tiers log and pass on (issue #15): a trusted PROXY v2 header's
//! UNIQUE_ID (printable ones as sent, short binary ones hex-encoded) or a fresh random one
//! (32 lowercase hex digits, like nginx's `$request_id`). Pure: reading and writing the
//! headers is `expect`'s and `send`'s; per-request ids are the edge's (`edge/request_id.rs`).

use std::fmt;
use std::sync::Arc;

use super::send::new_unique_id;

/// Longest id: the PROXY v2 UNIQUE_ID limit, so any id can be sent on as a UNIQUE_ID.
pub(crate) const MAX_LEN: usize = proxy_header::tlv::kind::UNIQUE_ID_MAX;

/// A connection's id: 1 to [`MAX_LEN`] bytes of [`is_id_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnId(Arc<str>);

impl ConnId {
    /// A fresh random id (16 random bytes as 32 hex digits).
    pub(crate) fn fresh() -> ConnId {
        let raw = new_unique_id();
        // Hex digits are ASCII.
        ConnId(String::from_utf8_lossy(&raw).into())
    }

    /// The id a received UNIQUE_ID value gives: the value itself when it is id text, else
    /// its hex digits when that fits [`MAX_LEN`]; None for an empty or too long binary value
    /// (the caller makes a fresh one).
    pub(crate) fn from_unique_id(raw: &[u8]) -> Option<ConnId> {
        if is_id_text(raw) {
            return Some(ConnId(String::from_utf8_lossy(raw).into()));
        }
        if raw.is_empty() || raw.len() * 2 > MAX_LEN {
            return None;
        }
        let mut s = String::with_capacity(raw.len() * 2);
        for b in raw {
            s.push_str(&format!("{b:02x}"));
        }
        Some(ConnId(s.into()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` can be an id as it is: 1 to [`MAX_LEN`] bytes of visible ASCII other than
/// `"` and `\`, so it goes into a log line, an HTTP header value and a uwsgi variable
/// unescaped and one grep finds it everywhere.
pub(crate) fn is_id_text(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (ConnId::fresh(), ConnId::fresh());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn unique_ids_printable_as_sent_binary_as_hex() {
        let id = |v: &[u8]| ConnId::from_unique_id(v).map(|i| i.to_string());
        assert_eq!(
            id(b"7F000001:C2A8_7F000001:01BB_6575").unwrap(),
            "7F000001:C2A8_7F000001:01BB_6575"
        );
        assert_eq!(id(&[0, 0xff, 0x10]).unwrap(), "00ff10");
        assert_eq!(id(b"a b").unwrap(), "612062", "a space is not id text");
        assert_eq!(id(b"x\"y").unwrap(), "782279");
        assert_eq!(id(b""), None);
        assert_eq!(id(&[0xff; 65]), None, "hex would exceed 128");
        assert_eq!(id(&[0xff; 64]).unwrap().len(), 128);
        assert_eq!(id(&[b'a'; 128]).unwrap().len(), 128);
        assert!(!is_id_text(&[b'a'; 129]));
    }
}
