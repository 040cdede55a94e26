//! Choosing a tcp frontend's backend by the client's ClientHello (`routes`): the first route
//! whose SNI patterns and ALPN names all match, else the frontend's backend. Pure matching
//! over what `client_hello` read; no I/O, no parsing (the patterns come typed from `spec`).

use std::sync::Arc;
use std::time::Duration;

use super::client_hello::Hello;
use super::frontend::L4Backend;
use crate::spec::{NoHello, Route, SniPattern};

/// A frontend's routes with their backends resolved.
#[derive(Debug)]
pub(crate) struct L4Routes {
    pub list: Vec<(Route, Arc<L4Backend>)>,
    pub preread_timeout: Duration,
    pub no_hello: NoHello,
}

impl L4Routes {
    /// The backend of the first route `hello` matches; None: the frontend's default.
    pub(crate) fn pick(&self, hello: &Hello) -> Option<&Arc<L4Backend>> {
        self.list
            .iter()
            .find(|(r, _)| matches(r, hello.sni.as_deref(), &hello.protocols))
            .map(|(_, be)| be)
    }
}

/// Whether `r` holds for a client that sent `sni` (as received: compared ignoring case)
/// and offered `protocols`.
pub(crate) fn matches(r: &Route, sni: Option<&str>, protocols: &[Vec<u8>]) -> bool {
    let sni_ok = r.sni.is_empty()
        || sni.is_some_and(|name| {
            let name = name.to_ascii_lowercase();
            let name = name.strip_suffix('.').unwrap_or(&name);
            r.sni.iter().any(|p| match p {
                SniPattern::Exact(e) => name == e,
                SniPattern::Suffix(s) => name.len() > s.len() && name.ends_with(s.as_str()),
            })
        });
    let alpn_ok = r.alpn.is_empty() || r.alpn.iter().any(|a| protocols.contains(a));
    sni_ok && alpn_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(sni: &[SniPattern], alpn: &[&str]) -> Route {
        Route {
            sni: sni.to_vec(),
            alpn: alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
            backend: "x".into(),
        }
    }

    #[test]
    fn sni_exact_and_wildcards() {
        let r = route(
            &[
                SniPattern::Exact("a.example".into()),
                SniPattern::Suffix(".b.example".into()),
            ],
            &[],
        );
        for yes in [
            "a.example",
            "A.Example",
            "a.example.",
            "x.b.example",
            "y.x.b.example",
        ] {
            assert!(matches(&r, Some(yes), &[]), "{yes}");
        }
        for no in ["b.example", "xa.example", "a.example.com", "xb.example", ""] {
            assert!(!matches(&r, Some(no), &[]), "{no}");
        }
        assert!(!matches(&r, None, &[]), "no SNI");
    }

    #[test]
    fn alpn_any_of_and_both_conditions() {
        let h2 = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acme = vec![b"acme-tls/1".to_vec()];
        assert!(matches(&route(&[], &["h2"]), None, &h2));
        assert!(!matches(&route(&[], &["h2"]), None, &acme));
        assert!(matches(&route(&[], &["acme-tls/1"]), Some("a"), &acme));
        let both = route(&[SniPattern::Exact("a.example".into())], &["h2"]);
        assert!(matches(&both, Some("a.example"), &h2));
        assert!(!matches(&both, Some("a.example"), &acme));
        assert!(!matches(&both, Some("c.example"), &h2));
    }
}
