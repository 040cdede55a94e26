//! The forwarding fields an app gets (`X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host`, `Forwarded`), as the edge decided them (`edge::forwarded`): both
//! upstream builders remove every client-sent copy of these names and write the edge's values
//! instead (HTTP: headers; uwsgi: `HTTP_*` variables). No policy or parsing here.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::addr::ClientAddr;

use super::Scheme;

/// Every forwarding field name the builders own, lowercase.
pub(crate) static FORWARDING_NAMES: [HeaderName; 5] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("forwarded"),
];

/// The forwarding fields of one request: exactly these reach the app, in this order; any
/// other copy of a [`FORWARDING_NAMES`] field is removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub fields: Vec<(HeaderName, HeaderValue)>,
}

impl Forwarding {
    /// The fields for a client that came straight to the edge (no trusted hop): X-Forwarded-For
    /// and X-Real-IP = its address, X-Forwarded-Proto = the scheme (the edge's default policy).
    pub fn direct(client: ClientAddr, scheme: Scheme) -> Self {
        let ip = client.addr().ip().to_string();
        let mut fields = Vec::with_capacity(3);
        if let Ok(v) = HeaderValue::from_str(&ip) {
            fields.push((FORWARDING_NAMES[0].clone(), v.clone()));
            fields.push((FORWARDING_NAMES[1].clone(), v));
        }
        fields.push((
            FORWARDING_NAMES[2].clone(),
            HeaderValue::from_static(scheme.as_str()),
        ));
        Forwarding { fields }
    }

    /// Replaces the request's forwarding fields by these (HTTP upstreams); names that
    /// differ from one only by `_` for `-` (passed with `underscores_in_headers`) go too.
    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        // Most requests carry none: one look at the names instead of five removals by hash.
        if headers.keys().any(is_forwarding) {
            self.remove_client_copies(headers);
        }
        for (name, value) in &self.fields {
            headers.append(name.clone(), value.clone());
        }
    }

    fn remove_client_copies(&self, headers: &mut HeaderMap) {
        for name in FORWARDING_NAMES.iter() {
            headers.remove(name);
        }
        let aliases: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_forwarding(n))
            .cloned()
            .collect();
        for name in aliases {
            headers.remove(&name);
        }
    }
}

/// True for a name the builders own, or one that aliases it in CGI variables
/// (`X-Forwarded_For` is `HTTP_X_FORWARDED_FOR` too): skipped when copying the client's headers.
pub(super) fn is_forwarding(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    FORWARDING_NAMES.iter().any(|f| {
        let f = f.as_str().as_bytes();
        f.len() == n.len()
            && f.iter()
                .zip(n)
                .all(|(a, b)| a == b || (*a == b'-' && *b == b'_'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PeerAddr;

    #[test]
    fn apply_replaces_every_client_copy() {
        let mut h = HeaderMap::new();
        for n in &FORWARDING_NAMES {
            h.append(n.clone(), HeaderValue::from_static("8.8.8.8"));
            h.append(n.clone(), HeaderValue::from_static("9.9.9.9"));
        }
        h.insert("x-keep", HeaderValue::from_static("yes"));
        h.insert("x-forwarded_for", HeaderValue::from_static("8.8.8.8"));
        h.insert("x_real_ip", HeaderValue::from_static("8.8.8.8"));
        h.insert("x-forwarded-fort", HeaderValue::from_static("kept"));
        let client = ClientAddr::direct(PeerAddr("127.0.0.2:4000".parse().unwrap()));
        Forwarding::direct(client, Scheme::Https).apply(&mut h);
        assert_eq!(h.len(), 5, "{h:?}");
        assert_eq!(h["x-forwarded-fort"], "kept");
        assert_eq!(h["x-forwarded-for"], "127.0.0.2");
        assert_eq!(h["x-real-ip"], "127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-keep"], "yes");
    }
}
