//! A tcp frontend's `routes`, `preread_timeout` and `no_hello`: checks (backends that exist
//! and forward bytes, SNI patterns that are host names or `*.` wildcards, ALPN names, keys
//! without effect) and conversion into `spec::Routes`. Matching a ClientHello is
//! `l4::route`'s; reading one is `l4::client_hello`'s.

use super::model::{Config, Frontend, Mode};
use super::spans::{At, KeyPath};
use super::validate::Issue;
use crate::spec::{self, SniPattern};

/// Longest ALPN protocol name (RFC 7301: one length byte).
const MAX_ALPN: usize = 255;

/// `a.example` or `*.b.example`, lower-cased; an error says what is wrong.
pub(super) fn parse_sni(s: &str) -> Result<SniPattern, String> {
    let lower = s.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let bad = |why: &str| Err(format!("{s:?} is not a host name or *.suffix: {why}"));
    if name.is_empty() || name.len() > 253 {
        return bad("1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every label has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("letters, digits, '-' and '_' only (IDNs in their xn-- form)");
        }
    }
    Ok(if wild {
        SniPattern::Suffix(format!(".{name}"))
    } else {
        SniPattern::Exact(name.to_string())
    })
}

/// The problems of frontend `i`'s routes; `p` is its key path.
pub(super) fn check(cfg: &Config, i: usize, p: &KeyPath, out: &mut Vec<Issue>) {
    let f = &cfg.frontends[i];
    let mut push = |path: KeyPath, at: At, message: String| out.push(Issue { path, at, message });
    if f.routes.is_empty() {
        for (set, key) in [
            (f.preread_timeout.is_some(), "preread_timeout"),
            (f.no_hello.is_some(), "no_hello"),
        ] {
            if set {
                push(p.key(key), At::Key, "has no effect without routes".into());
            }
        }
        return;
    }
    if f.mode != Mode::Tcp {
        push(
            p.key("routes"),
            At::Key,
            "routes by ClientHello are for tcp-mode frontends (an http-mode frontend \
             terminates TLS and picks its certificate by SNI itself)"
                .into(),
        );
        return;
    }
    if let Some(t) = f.preread_timeout {
        if t.0.is_zero() || t.0 > std::time::Duration::from_secs(300) {
            push(
                p.key("preread_timeout"),
                At::Value,
                "must be longer than 0s and at most 5m".into(),
            );
        }
    }
    for (j, r) in f.routes.iter().enumerate() {
        let rp = p.key("routes").index(j);
        if r.sni.is_empty() && r.alpn.is_empty() {
            push(
                rp.clone(),
                At::Value,
                "needs sni or alpn (the frontend's backend is the route for everything else)"
                    .into(),
            );
        }
        for (k, s) in r.sni.iter().enumerate() {
            if let Err(e) = parse_sni(s) {
                push(rp.key("sni").index(k), At::Value, e);
            }
        }
        for (k, a) in r.alpn.iter().enumerate() {
            if a.is_empty() || a.len() > MAX_ALPN {
                push(
                    rp.key("alpn").index(k),
                    At::Value,
                    format!("an ALPN protocol name has 1 to {MAX_ALPN} bytes"),
                );
            }
        }
        match cfg.backends.iter().find(|b| b.name == r.backend) {
            None => push(
                rp.key("backend"),
                At::Value,
                format!("no backend named {:?}", r.backend),
            ),
            Some(b) if b.protocol != super::model::Protocol::Http => push(
                rp.key("backend"),
                At::Value,
                format!(
                    "backend {:?} speaks an app protocol; a tcp frontend forwards bytes \
                     unmodified (protocol = \"http\", the default)",
                    r.backend
                ),
            ),
            Some(_) => {
                if let Some(by) = cfg
                    .frontends
                    .iter()
                    .find(|o| o.mode == Mode::Http && o.backend == r.backend)
                {
                    push(
                        rp.key("backend"),
                        At::Value,
                        format!(
                            "backend {:?} is already used by http-mode frontend {:?}; a backend \
                             serves frontends of one mode",
                            r.backend, by.name
                        ),
                    );
                }
            }
        }
    }
}

/// The routes of `f` (None without any), once `check` passed.
pub(super) fn convert(f: &Frontend) -> Result<Option<spec::Routes>, (String, String)> {
    if f.routes.is_empty() {
        return Ok(None);
    }
    let list = f
        .routes
        .iter()
        .enumerate()
        .map(|(j, r)| {
            let sni = r
                .sni
                .iter()
                .enumerate()
                .map(|(k, s)| parse_sni(s).map_err(|e| (format!("routes[{j}].sni[{k}]"), e)))
                .collect::<Result<_, (String, String)>>()?;
            Ok(spec::Route {
                sni,
                alpn: r.alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
                backend: r.backend.clone(),
            })
        })
        .collect::<Result<_, (String, String)>>()?;
    Ok(Some(spec::Routes {
        list,
        preread_timeout: f
            .preread_timeout
            .map_or(spec::DEFAULT_PREREAD_TIMEOUT, |d| d.0),
        no_hello: f.no_hello.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_patterns() {
        assert_eq!(
            parse_sni("A.Example").unwrap(),
            SniPattern::Exact("a.example".into())
        );
        assert_eq!(
            parse_sni("*.b.example").unwrap(),
            SniPattern::Suffix(".b.example".into())
        );
        for bad in [
            "",
            "*.",
            "*",
            "a..b",
            "a.*.b",
            "a b",
            "é.example",
            ".a",
            "a/b",
        ] {
            assert!(parse_sni(bad).is_err(), "{bad:?} accepted");
        }
    }
}
