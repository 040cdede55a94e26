//! The uwsgi request packet (modifier1 = 0): a 4-byte header (modifier1, datasize u16 LE,
//! modifier2) and the CGI variables of nginx's `uwsgi_params` plus SERVER_ADDR and HTTP_*
//! (built by `upstream::cgi`, shared with FastCGI), each with u16 lengths.
//! Pure: builds bytes from request parts and context; the body is sent by the caller.

use hyper::http::request::Parts;

pub use crate::upstream::cgi::document_uri;
use crate::upstream::cgi::{self, CgiOpts, Flavor, VarSink};
use crate::upstream::{RequestContext, UpstreamError};

/// Largest variable block a uwsgi packet can carry (datasize is a u16).
pub const MAX_DATASIZE: usize = u16::MAX as usize;

/// Encoded uwsgi variables, length-checked as they are added.
struct Vars {
    buf: Vec<u8>,
}

impl VarSink for Vars {
    fn push(&mut self, key: &[u8], val: &[u8]) -> Result<(), UpstreamError> {
        let (Ok(kl), Ok(vl)) = (u16::try_from(key.len()), u16::try_from(val.len())) else {
            return Err(UpstreamError::HeadersTooLarge);
        };
        if self.buf.len() - 4 + 4 + key.len() + val.len() > MAX_DATASIZE {
            return Err(UpstreamError::HeadersTooLarge);
        }
        self.buf.extend_from_slice(&kl.to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&vl.to_le_bytes());
        self.buf.extend_from_slice(val);
        Ok(())
    }
}

/// Builds the whole packet (header + vars) for a request whose body is `content_length`
/// bytes: the variables of `cgi::build` (with PATH_INFO), each length-checked.
pub fn build(
    parts: &Parts,
    ctx: &RequestContext,
    content_length: u64,
    document_root: &str,
    underscores: bool,
) -> Result<Vec<u8>, UpstreamError> {
    let mut v = Vars {
        buf: Vec::with_capacity(1024),
    };
    v.buf.extend_from_slice(&[0, 0, 0, 0]);
    let opts = CgiOpts {
        document_root,
        underscores,
        flavor: Flavor::Uwsgi,
    };
    cgi::build(parts, ctx, content_length, &opts, &mut v)?;
    let size = (v.buf.len() - 4) as u16; // push() keeps it <= MAX_DATASIZE
    v.buf[1..3].copy_from_slice(&size.to_le_bytes());
    Ok(v.buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables of a packet, in order.
    fn vars_of(packet: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut i = 4;
        while i < packet.len() {
            let kl = u16::from_le_bytes([packet[i], packet[i + 1]]) as usize;
            let k = String::from_utf8_lossy(&packet[i + 2..i + 2 + kl]).into_owned();
            i += 2 + kl;
            let vl = u16::from_le_bytes([packet[i], packet[i + 1]]) as usize;
            let v = String::from_utf8_lossy(&packet[i + 2..i + 2 + vl]).into_owned();
            i += 2 + vl;
            out.push((k, v));
        }
        out
    }

    #[test]
    fn forwarding_vars_are_the_contexts_even_with_underscores() {
        let req = hyper::Request::get("/")
            .header("host", "app.test")
            .header("x-forwarded-for", "8.8.8.8")
            .header("x-forwarded_for", "8.8.8.8")
            .header("forwarded", "for=8.8.8.8")
            .header("x_real_ip", "8.8.8.8")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let ctx = crate::upstream::uwsgi_tests::ctx();
        let vars = vars_of(&build(&parts, &ctx, 0, "", true).unwrap());
        let fwd: Vec<_> = vars
            .iter()
            .filter(|(k, _)| k.contains("FORWARDED") || k.contains("REAL_IP"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            fwd,
            [
                ("HTTP_X_FORWARDED_FOR", "127.0.0.2"),
                ("HTTP_X_REAL_IP", "127.0.0.2"),
                ("HTTP_X_FORWARDED_PROTO", "https"),
            ]
        );
    }

    fn du(p: &str) -> String {
        String::from_utf8(document_uri(p).unwrap()).unwrap()
    }

    #[test]
    fn document_uri_decodes_and_normalizes() {
        assert_eq!(du("/"), "/");
        assert_eq!(du("/a%20b/c"), "/a b/c");
        assert_eq!(du("/a//b/./c/../d/"), "/a/b/d/");
        assert_eq!(du("/a/%2e%2e/b"), "/b");
        assert_eq!(du("/x%zz%4"), "/x%zz%4");
        assert_eq!(du("/caf%C3%A9"), "/café");
        assert!(document_uri("/../etc").is_err());
        assert!(document_uri("/a%00b").is_err());
    }
}
