//! The FastCGI keys of a backend (`root`, `index`, `keepalive`), nginx's `root`,
//! `fastcgi_index` and upstream `keepalive`: checked (only on `protocol = "fastcgi"`, root
//! absolute, a FastCGI backend behind http-mode frontends with tcp health checks) and
//! converted into `spec::FastCgi`. Does not open the root (php-fpm may see another tree).

use super::edge::{backend_modes, effective_cap};
use super::model::{Backend, Config, HealthKind, Mode, Protocol};
use super::spans::{At, KeyPath};
use super::validate::Issue;
use crate::spec;

/// `index` when unset (nginx's usual `fastcgi_index index.php`).
const DEFAULT_INDEX: &str = "index.php";
/// Most idle connections kept per server.
const MAX_KEEPALIVE: usize = 1024;

fn issue(out: &mut Vec<Issue>, path: KeyPath, at: At, message: impl Into<String>) {
    out.push(Issue {
        path,
        at,
        message: message.into(),
    });
}

/// Every problem with the FastCGI keys and pairings.
pub(super) fn check(cfg: &Config, out: &mut Vec<Issue>) {
    let modes = backend_modes(cfg);
    for (k, b) in cfg.backends.iter().enumerate() {
        let p = KeyPath::root().key("backend").index(k);
        if b.protocol != Protocol::Fastcgi {
            let set = [
                ("root", b.root.is_some()),
                ("index", b.index.is_some()),
                ("keepalive", b.keepalive.is_some()),
            ];
            for (name, _) in set.into_iter().filter(|(_, on)| *on) {
                issue(
                    out,
                    p.key(name),
                    At::Key,
                    format!("{name} is for backends with protocol = \"fastcgi\""),
                );
            }
            continue;
        }
        if modes[k] == Some(Mode::Tcp) {
            issue(
                out,
                p.key("protocol"),
                At::Value,
                "protocol = \"fastcgi\" needs an http-mode frontend; a tcp-mode frontend \
                 forwards bytes unmodified",
            );
        }
        match b.root.as_deref() {
            None => issue(
                out,
                p.key("protocol"),
                At::Value,
                "protocol = \"fastcgi\" needs root = \"DIR\": the directory SCRIPT_FILENAME \
                 starts with (nginx `root`), as the FastCGI app sees it",
            ),
            Some(r) if !r.starts_with('/') || r.contains('\0') => {
                issue(out, p.key("root"), At::Value, "must be an absolute path")
            }
            Some(_) => {}
        }
        if let Some(i) = &b.index {
            if i.is_empty() || i.contains(['/', '\0']) {
                issue(
                    out,
                    p.key("index"),
                    At::Value,
                    "must be a file name (no '/')",
                );
            }
        }
        let keepalive = b.keepalive.unwrap_or(0);
        if keepalive > MAX_KEEPALIVE {
            issue(
                out,
                p.key("keepalive"),
                At::Value,
                format!("must be at most {MAX_KEEPALIVE}"),
            );
        }
        // Idle sockets per server stay within what the fd budget counts for it.
        let smallest = (0..b.servers.len())
            .map(|j| effective_cap(cfg, &modes, k, j))
            .filter(|&c| c > 0)
            .min();
        if let Some(cap) = smallest.filter(|&c| keepalive > c) {
            issue(
                out,
                p.key("keepalive"),
                At::Value,
                format!("must be at most the servers' max_connections ({cap})"),
            );
        }
        if let Some(h) = &b.health {
            if h.kind != HealthKind::Tcp {
                issue(
                    out,
                    p.key("health").key("kind"),
                    At::Value,
                    "a FastCGI server speaks neither HTTP nor TLS; use kind = \"tcp\"",
                );
            }
        }
    }
}

/// The spec of a backend's FastCGI keys (defaults filled in).
pub(super) fn spec(b: &Backend) -> spec::FastCgi {
    spec::FastCgi {
        root: b.root.clone().unwrap_or_default(),
        index: b.index.clone().unwrap_or_else(|| DEFAULT_INDEX.into()),
        keepalive: b.keepalive.unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::{load_str_with, LoadOptions};
    use crate::spec::Protocol;

    fn edge(backend: &str, mode: &str) -> String {
        format!(
            "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\nmode = \"{mode}\"\n\
             backend = \"php\"\n\n[[backend]]\nname = \"php\"\n{backend}\n\
             servers = [{{ addr = \"unix:/run/php/fpm.sock\" }}]\n"
        )
    }

    fn refused(backend: &str, mode: &str, says: &str) {
        let err = load_str_with(&edge(backend, mode), "f.toml", &LoadOptions::content_only())
            .expect_err("config accepted");
        let msg = err.to_string();
        assert!(msg.contains(says), "{backend:?}: {msg}");
    }

    #[test]
    fn defaults_and_spec() {
        let t = edge("protocol = \"fastcgi\"\nroot = \"/srv/www\"", "http");
        let cfg = load_str_with(&t, "f.toml", &LoadOptions::content_only()).unwrap();
        let spec = cfg.spec().unwrap();
        let b = &spec.backends[0];
        assert_eq!(b.protocol, Protocol::Fastcgi);
        assert_eq!(
            (b.fastcgi.root.as_str(), b.fastcgi.index.as_str()),
            ("/srv/www", "index.php")
        );
        assert_eq!(b.fastcgi.keepalive, 0);
        assert_eq!(b.servers[0].max_connections, 100);
        let t = edge(
            "protocol = \"fastcgi\"\nroot = \"/srv\"\nindex = \"app.php\"\nkeepalive = 8",
            "http",
        );
        let cfg = load_str_with(&t, "f.toml", &LoadOptions::content_only()).unwrap();
        let b = &cfg.spec().unwrap().backends[0];
        assert_eq!(
            (b.fastcgi.index.as_str(), b.fastcgi.keepalive),
            ("app.php", 8)
        );
    }

    #[test]
    fn refusals() {
        refused("protocol = \"fastcgi\"", "http", "needs root");
        refused("protocol = \"fastcgi\"\nroot = \"www\"", "http", "absolute");
        refused(
            "protocol = \"fastcgi\"\nroot = \"/w\"\nindex = \"a/b.php\"",
            "http",
            "file name",
        );
        refused(
            "protocol = \"fastcgi\"\nroot = \"/w\"\nkeepalive = 101",
            "http",
            "max_connections (100)",
        );
        refused(
            "protocol = \"fastcgi\"\nroot = \"/w\"",
            "tcp",
            "http-mode frontend",
        );
        refused(
            "protocol = \"fastcgi\"\nroot = \"/w\"\nhealth = { kind = \"http\" }",
            "http",
            "kind = \"tcp\"",
        );
        refused(
            "protocol = \"uwsgi\"\nkeepalive = 2",
            "http",
            "keepalive is for",
        );
        refused("root = \"/w\"", "http", "root is for");
    }
}
