//! A backend server given by a DNS SRV name (`srv = "_app._tcp.example.test"`) instead of
//! `addr`: exactly one of the two, the name checked as a DNS name (underscores allowed),
//! converted into `ServerAddr::Srv`. Looking the records up is `discovery`'s.

use super::model::Server;
use crate::addr::ServerAddr;

/// Longest DNS name (RFC 1035, without the trailing dot).
const MAX_NAME: usize = 253;

/// Checks a server that has `srv` set or no `addr`: the key at fault and why.
pub(super) fn check_server(s: &Server) -> Result<(), (&'static str, String)> {
    match (&s.srv, s.addr.is_empty()) {
        (None, _) => Err((
            "addr",
            "a server needs addr (\"ip:port\", \"host:port\", \"unix:/path\") or srv (a DNS \
             SRV name such as \"_app._tcp.example.test\")"
                .into(),
        )),
        (Some(_), false) => Err((
            "srv",
            "give either addr or srv, not both (srv takes the port from the records)".into(),
        )),
        (Some(name), true) => check_name(name).map_err(|e| ("srv", e)),
    }
}

/// A DNS name of labels of 1-63 letters, digits, `-` or `_`, at most 253 bytes, with an
/// optional trailing dot, and at least two labels.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let bad = |why: &str| Err(format!("invalid SRV name {name:?}: {why}"));
    if bare.is_empty() || bare.len() > MAX_NAME {
        return bad("expected a DNS name of 1 to 253 bytes such as \"_app._tcp.example.test\"");
    }
    let mut labels = 0;
    for label in bare.split('.') {
        labels += 1;
        if label.is_empty() || label.len() > 63 {
            return bad("each label (between dots) has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("labels hold letters, digits, '-' and '_'");
        }
    }
    if labels < 2 {
        return bad("expected at least two labels, such as \"web.service.consul\"");
    }
    Ok(())
}

/// The spec address of a checked SRV name (trailing dot kept: a fully qualified name skips
/// the search list, as in /etc/resolv.conf).
pub(super) fn server_addr(name: &str) -> ServerAddr {
    ServerAddr::Srv {
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_names() {
        for ok in [
            "_app._tcp.example.test",
            "_http._tcp.web.default.svc.cluster.local.",
            "web.service.consul",
            "_web._tcp.service.consul",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "app", "a..b", "_app._tcp.ex ample", "x.é.test"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(&format!("{}.test", "a".repeat(64))).is_err());
    }
}
