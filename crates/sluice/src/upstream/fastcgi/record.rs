//! FastCGI 1.0 records: the encoder for what the edge sends (BEGIN_REQUEST, PARAMS with
//! name-value pairs, STDIN) and a strict decoder for what an app sends back (STDOUT, STDERR,
//! END_REQUEST of request 1 only). Pure functions over bytes (fuzzed by
//! fuzz/fuzz_targets/fastcgi_record.rs): errors for any bad input, never a panic. No I/O.

use bytes::{Buf, Bytes, BytesMut};

use crate::upstream::cgi::VarSink;
use crate::upstream::UpstreamError;

/// The only protocol version.
pub const VERSION: u8 = 1;
/// Bytes of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest record content.
pub const MAX_CONTENT: usize = u16::MAX as usize;
/// The one request id used on a connection (no multiplexing, like nginx).
pub const REQUEST_ID: u16 = 1;

pub const BEGIN_REQUEST: u8 = 1;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;

/// BEGIN_REQUEST role: the app answers the request (the only role nginx uses).
const ROLE_RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag: keep the connection open after END_REQUEST.
const FLAG_KEEP_CONN: u8 = 1;

/// END_REQUEST protocol status: the request was served.
pub const REQUEST_COMPLETE: u8 = 0;
/// Largest END_REQUEST protocol status defined (CANT_MPX_CONN 1, OVERLOADED 2, UNKNOWN_ROLE 3).
const MAX_PROTOCOL_STATUS: u8 = 3;

/// Largest name or value length a name-value pair can state (31 bits).
const MAX_PAIR_LEN: usize = 0x7fff_ffff;

/// A record from the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Response bytes; an empty one ends the stream.
    Stdout(Bytes),
    /// The app's error output (logged, never sent to the client); empty ends the stream.
    Stderr(Bytes),
    /// The request is over.
    End {
        app_status: u32,
        protocol_status: u8,
    },
}

/// Why bytes from the app are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("FastCGI record version {0}, expected 1")]
    Version(u8),
    #[error("FastCGI record for request {0}, expected 1")]
    RequestId(u16),
    #[error("unexpected FastCGI record type {0}")]
    Type(u8),
    #[error("FastCGI END_REQUEST of {0} bytes, expected 8")]
    EndLength(usize),
    #[error("FastCGI END_REQUEST protocol status {0}")]
    ProtocolStatus(u8),
    #[error("bad FastCGI name-value pair")]
    Pair,
}

impl From<RecordError> for UpstreamError {
    fn from(e: RecordError) -> Self {
        UpstreamError::BadResponse(e.to_string())
    }
}

/// Appends a record header for `len` content bytes (the caller appends the content).
fn header(out: &mut Vec<u8>, kind: u8, len: u16) {
    let id = REQUEST_ID.to_be_bytes();
    let l = len.to_be_bytes();
    out.extend_from_slice(&[VERSION, kind, id[0], id[1], l[0], l[1], 0, 0]);
}

/// Appends BEGIN_REQUEST (responder role; FCGI_KEEP_CONN when `keep_conn`).
pub fn begin_request(out: &mut Vec<u8>, keep_conn: bool) {
    header(out, BEGIN_REQUEST, 8);
    let role = ROLE_RESPONDER.to_be_bytes();
    let flags = if keep_conn { FLAG_KEEP_CONN } else { 0 };
    out.extend_from_slice(&[role[0], role[1], flags, 0, 0, 0, 0, 0]);
}

/// Appends `data` as records of `kind` (STDIN or PARAMS), at most 65535 bytes each; nothing
/// for empty data (the stream's end is [`end_stream`]).
pub fn stream(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    for part in data.chunks(MAX_CONTENT) {
        header(out, kind, part.len() as u16); // chunks() keeps it <= u16::MAX
        out.extend_from_slice(part);
    }
}

/// Appends the empty record that ends a stream of `kind`.
pub fn end_stream(out: &mut Vec<u8>, kind: u8) {
    header(out, kind, 0);
}

/// Encoded name-value pairs (the PARAMS stream's content), capped at `max` bytes.
pub struct Pairs {
    pub buf: Vec<u8>,
    max: usize,
}

impl Pairs {
    pub fn new(max: usize) -> Self {
        Pairs {
            buf: Vec::with_capacity(2048),
            max,
        }
    }
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&(n as u32 | 0x8000_0000).to_be_bytes());
    }
}

impl VarSink for Pairs {
    fn push(&mut self, key: &[u8], val: &[u8]) -> Result<(), UpstreamError> {
        let need = 8 + key.len() + val.len();
        if key.len() > MAX_PAIR_LEN
            || val.len() > MAX_PAIR_LEN
            || self.buf.len().saturating_add(need) > self.max
        {
            return Err(UpstreamError::HeadersTooLarge);
        }
        push_len(&mut self.buf, key.len());
        push_len(&mut self.buf, val.len());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(val);
        Ok(())
    }
}

/// A decoded name-value pair (name, value).
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Reads one pair length (1 byte under 128, else 4 bytes with the top bit set).
fn pair_len(b: &[u8]) -> Result<(usize, usize), RecordError> {
    match b {
        [n, ..] if *n < 0x80 => Ok((*n as usize, 1)),
        [a, b1, c, d, ..] => {
            let n = u32::from_be_bytes([a & 0x7f, *b1, *c, *d]) as usize;
            Ok((n, 4))
        }
        _ => Err(RecordError::Pair),
    }
}

/// Decodes a whole PARAMS stream content into its pairs (what an app does; the edge uses it
/// in tests and the fuzz target checks it against the encoder).
pub fn decode_pairs(mut b: &[u8]) -> Result<Vec<Pair<'_>>, RecordError> {
    let mut out = Vec::new();
    // Bounded: each pass consumes at least two bytes or fails.
    while !b.is_empty() {
        let (kl, a) = pair_len(b)?;
        let (vl, c) = pair_len(&b[a..])?;
        let rest = &b[a + c..];
        if rest.len() < kl || rest.len() - kl < vl {
            return Err(RecordError::Pair);
        }
        out.push((&rest[..kl], &rest[kl..kl + vl]));
        b = &rest[kl + vl..];
    }
    Ok(out)
}

/// Takes one complete record off the front of `buf`: `Ok(None)` until all of it (header,
/// content, padding) is there. At most 8 + 65535 + 255 bytes are ever needed, so a reader
/// that buffers until this returns stays bounded. Strict: version 1, request id 1, only
/// STDOUT, STDERR and END_REQUEST (8 bytes, a defined protocol status).
pub fn decode(buf: &mut BytesMut) -> Result<Option<Record>, RecordError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if h[0] != VERSION {
        return Err(RecordError::Version(h[0]));
    }
    let kind = h[1];
    let id = u16::from_be_bytes([h[2], h[3]]);
    let len = u16::from_be_bytes([h[4], h[5]]) as usize;
    let pad = h[6] as usize;
    if !matches!(kind, STDOUT | STDERR | END_REQUEST) {
        return Err(RecordError::Type(kind));
    }
    if id != REQUEST_ID {
        return Err(RecordError::RequestId(id));
    }
    if kind == END_REQUEST && len != 8 {
        return Err(RecordError::EndLength(len));
    }
    if buf.len() < HEADER_LEN + len + pad {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let content = buf.split_to(len).freeze();
    buf.advance(pad);
    Ok(Some(match kind {
        STDOUT => Record::Stdout(content),
        STDERR => Record::Stderr(content),
        _ => {
            let c = &content[..];
            let protocol_status = c[4];
            if protocol_status > MAX_PROTOCOL_STATUS {
                return Err(RecordError::ProtocolStatus(protocol_status));
            }
            Record::End {
                app_status: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                protocol_status,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: u8, id: u16, content: &[u8], pad: u8) -> Vec<u8> {
        let mut v = vec![VERSION, kind];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        v.extend_from_slice(&[pad, 0]);
        v.extend_from_slice(content);
        v.extend(std::iter::repeat_n(0, pad as usize));
        v
    }

    #[test]
    fn decodes_stdout_stderr_end_with_padding_across_partial_reads() {
        let mut all = rec(STDOUT, 1, b"Status: 200\r\n\r\nhi", 6);
        all.extend(rec(STDERR, 1, b"oops", 0));
        all.extend(rec(STDOUT, 1, b"", 0));
        all.extend(rec(END_REQUEST, 1, &[0, 0, 0, 7, 0, 0, 0, 0], 0));
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for b in all {
            buf.extend_from_slice(&[b]);
            while let Some(r) = decode(&mut buf).unwrap() {
                got.push(r);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(
            got,
            [
                Record::Stdout(Bytes::from_static(b"Status: 200\r\n\r\nhi")),
                Record::Stderr(Bytes::from_static(b"oops")),
                Record::Stdout(Bytes::new()),
                Record::End {
                    app_status: 7,
                    protocol_status: 0
                },
            ]
        );
    }

    #[test]
    fn refuses_what_an_app_must_not_send() {
        let bad = |v: Vec<u8>| decode(&mut BytesMut::from(&v[..])).unwrap_err();
        let mut v2 = rec(STDOUT, 1, b"x", 0);
        v2[0] = 2;
        assert_eq!(bad(v2), RecordError::Version(2));
        assert_eq!(bad(rec(STDOUT, 2, b"x", 0)), RecordError::RequestId(2));
        assert_eq!(bad(rec(STDOUT, 0, b"x", 0)), RecordError::RequestId(0));
        assert_eq!(bad(rec(STDIN, 1, b"x", 0)), RecordError::Type(STDIN));
        assert_eq!(bad(rec(11, 1, b"x", 0)), RecordError::Type(11));
        assert_eq!(
            bad(rec(END_REQUEST, 1, &[0; 7], 0)),
            RecordError::EndLength(7)
        );
        assert_eq!(
            bad(rec(END_REQUEST, 1, &[0, 0, 0, 0, 4, 0, 0, 0], 0)),
            RecordError::ProtocolStatus(4)
        );
        // A bad header is refused before its content arrives.
        assert!(decode(&mut BytesMut::from(&[9u8, 6, 0, 1, 0xff, 0xff, 0, 0][..])).is_err());
    }

    #[test]
    fn encoder_output_round_trips_through_pairs_and_stream_splitting() {
        let mut p = Pairs::new(1 << 20);
        let long = vec![b'v'; 300];
        p.push(b"A", b"").unwrap();
        p.push(b"SCRIPT_FILENAME", &long).unwrap();
        p.push(&long, b"x").unwrap();
        let pairs = decode_pairs(&p.buf).unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[1], (&b"SCRIPT_FILENAME"[..], &long[..]));
        assert_eq!(pairs[2], (&long[..], &b"x"[..]));
        assert!(decode_pairs(&p.buf[..p.buf.len() - 1]).is_err());
        assert!(decode_pairs(&[0x80, 0, 0]).is_err());
        assert!(Pairs::new(10).push(b"NAME", b"value").is_err());

        let mut out = Vec::new();
        begin_request(&mut out, true);
        assert_eq!(out, [1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
        out.clear();
        stream(&mut out, STDIN, &vec![7u8; MAX_CONTENT + 10]);
        end_stream(&mut out, STDIN);
        assert_eq!(out.len(), 3 * HEADER_LEN + MAX_CONTENT + 10);
        assert_eq!(&out[4..6], &[0xff, 0xff]);
        let second = HEADER_LEN + MAX_CONTENT;
        assert_eq!(&out[second + 4..second + 6], &[0, 10]);
        assert_eq!(&out[out.len() - 8..], &[1, STDIN, 0, 1, 0, 0, 0, 0]);
    }
}
