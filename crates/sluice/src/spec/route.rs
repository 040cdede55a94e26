//! A tcp frontend's routes by TLS ClientHello (`routes = [{ sni, alpn, backend }]`, nginx
//! `ssl_preread` + `map`, HAProxy `use_backend ... if { req.ssl_sni ... }`): the typed form,
//! SNI patterns already lower-cased and split into exact names and `*.suffix` wildcards.
//! Matching is `l4::route`'s; parsing and checks are `config::routes`'.

use std::time::Duration;

use serde::Deserialize;

/// The routes of one tcp frontend and how the ClientHello is waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Tried in order; the first that matches names the backend.
    pub list: Vec<Route>,
    /// Longest wait for a complete ClientHello (nginx `preread_timeout`, HAProxy
    /// `tcp-request inspect-delay`); a client still sending when it passes is closed.
    pub preread_timeout: Duration,
    /// What a client whose first bytes are no ClientHello (or too large a one) gets.
    pub no_hello: NoHello,
}

/// One route: every listed condition must hold (an empty list holds for any client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Any of these matches the SNI; empty: any SNI, or none.
    pub sni: Vec<SniPattern>,
    /// Any of these is among the offered ALPN protocols; empty: any.
    pub alpn: Vec<Vec<u8>>,
    /// The backend's name.
    pub backend: String,
}

/// An SNI pattern, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniPattern {
    /// `a.example`: that name.
    Exact(String),
    /// `*.b.example` (kept as `.b.example`): any name ending with it, one or more labels
    /// deep (nginx's `*.` server names), not `b.example` itself.
    Suffix(String),
}

/// `no_hello`: for a client that sends no TLS ClientHello (plain text, another protocol,
/// or a hello larger than the read limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoHello {
    /// The frontend's `backend` (nginx: `ssl_preread` variables empty, `map` default).
    #[default]
    Default,
    /// Closed without forwarding.
    Reject,
}

/// `preread_timeout` when unset (HAProxy's documented `inspect-delay` example; nginx's
/// `preread_timeout` is 30s).
pub const DEFAULT_PREREAD_TIMEOUT: Duration = Duration::from_secs(5);
