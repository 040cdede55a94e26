//! What one reload (or DNS update) changed, for the log line it writes and for tests:
//! listeners kept, added and removed, backends added/changed/removed (with the per-server
//! diff), frontends rebuilt, TLS edges whose files were re-read. Pure data and formatting.

use std::fmt;
use std::net::SocketAddr;

use crate::balance::PoolDiff;

/// How one backend changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChange {
    Added,
    /// A successor pool; unchanged servers carried over their state.
    Changed(PoolDiff),
    Removed,
}

/// The outcome of a successful reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Sockets kept open across the reload (actual bound addresses).
    pub listeners_kept: Vec<SocketAddr>,
    /// (frontend, address) of sockets newly bound.
    pub listeners_added: Vec<(String, SocketAddr)>,
    /// Sockets closed (after accepting what was queued).
    pub listeners_removed: Vec<SocketAddr>,
    /// Backends that are not exactly as before (unchanged ones are not listed).
    pub backends: Vec<(String, BackendChange)>,
    /// Frontends whose new connections get a rebuilt frontend (config or backend changed).
    pub frontends_rebuilt: Vec<String>,
    /// Frontends whose TLS certificates and ticket keys were re-read in place.
    pub tls_reloaded: Vec<String>,
}

impl ReloadSummary {
    /// The diff of backend `name`, when it changed.
    pub fn backend(&self, name: &str) -> Option<&BackendChange> {
        self.backends
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "-".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for ReloadSummary {
    /// One line: `listeners kept=N added=A removed=R backends ... frontends_rebuilt=...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let added: Vec<String> = self
            .listeners_added
            .iter()
            .map(|(n, a)| format!("{n}@{a}"))
            .collect();
        write!(
            f,
            "listeners kept={} added={} removed={}",
            self.listeners_kept.len(),
            list(&added),
            list(&self.listeners_removed)
        )?;
        for (name, change) in &self.backends {
            match change {
                BackendChange::Added => write!(f, " backend {name}=added")?,
                BackendChange::Removed => write!(f, " backend {name}=removed")?,
                BackendChange::Changed(d) => write!(
                    f,
                    " backend {name}=changed(kept={} reweighted={} added={} removed={})",
                    list(&d.kept),
                    list(&d.reweighted),
                    list(&d.added),
                    list(&d.removed)
                )?,
            }
        }
        write!(
            f,
            " frontends_rebuilt={} tls_reloaded={}",
            list(&self.frontends_rebuilt),
            list(&self.tls_reloaded)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_names_every_change() {
        let s = ReloadSummary {
            listeners_kept: vec!["127.0.0.1:1".parse().unwrap()],
            listeners_added: vec![("web".into(), "127.0.0.1:2".parse().unwrap())],
            listeners_removed: vec![],
            backends: vec![(
                "app".into(),
                BackendChange::Changed(PoolDiff {
                    kept: vec!["a".into()],
                    reweighted: vec![],
                    added: vec!["c".into()],
                    removed: vec!["b".into()],
                }),
            )],
            frontends_rebuilt: vec!["web".into()],
            tls_reloaded: vec![],
        };
        assert_eq!(
            s.to_string(),
            "listeners kept=1 added=web@127.0.0.1:2 removed=- backend app=changed(kept=a \
             reweighted=- added=c removed=b) frontends_rebuilt=web tls_reloaded=-"
        );
        assert!(matches!(s.backend("app"), Some(BackendChange::Changed(_))));
        assert!(s.backend("x").is_none());
    }
}
