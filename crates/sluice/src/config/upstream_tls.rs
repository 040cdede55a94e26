//! Checks of a backend's `[backend.tls]` (TLS from the edge to gRPC app servers, nginx's
//! `grpc_ssl_*`): only on `protocol = "grpc"`, `verify` needs a readable
//! `trusted_certificate`, a `name` that is a valid server name. Loading the CA file and the
//! handshake are `tls/upstream.rs`'s.

use super::model::{Config, Protocol};
use super::spans::{At, KeyPath};
use super::validate::Issue;

fn value(out: &mut Vec<Issue>, path: KeyPath, message: impl Into<String>) {
    out.push(Issue {
        path,
        at: At::Value,
        message: message.into(),
    });
}

/// Every problem with the backends' `tls` tables.
pub(super) fn check(cfg: &Config, out: &mut Vec<Issue>) {
    for (k, b) in cfg.backends.iter().enumerate() {
        let Some(tls) = &b.tls else { continue };
        let p = KeyPath::root().key("backend").index(k).key("tls");
        if b.protocol != Protocol::Grpc {
            value(
                out,
                p.clone(),
                "TLS to the app servers is for protocol = \"grpc\" (nginx grpc_pass grpcs://); \
                 h2c is cleartext HTTP/2 by definition",
            );
        }
        match (&tls.trusted_certificate, tls.verify) {
            (None, true) => value(
                out,
                p.key("verify"),
                "verify = true needs trusted_certificate (a PEM file of the CAs to trust, nginx \
                 grpc_ssl_trusted_certificate)",
            ),
            (Some(path), _) => {
                if let Err(e) = std::fs::metadata(path).and_then(|m| {
                    m.is_file()
                        .then_some(())
                        .ok_or_else(|| std::io::Error::other("not a regular file"))
                }) {
                    value(
                        out,
                        p.key("trusted_certificate"),
                        format!("cannot read {path:?}: {e}"),
                    );
                }
            }
            (None, false) => {}
        }
        if let Some(name) = &tls.name {
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                value(
                    out,
                    p.key("name"),
                    format!("{name:?} is not a DNS name or an IP address"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load::load_str;

    fn cfg(protocol: &str, tls: &str) -> String {
        format!(
            "[global]\nmax_connections = 100\n\n[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"app\"\n\n[[backend]]\nname = \"app\"\nprotocol = \"{protocol}\"\n\
             tls = {{ {tls} }}\n[[backend.servers]]\naddr = \"127.0.0.1:50051\"\n"
        )
    }

    #[test]
    fn tls_to_apps_is_checked() {
        let ok = load_str(&cfg("grpc", "server_name = true"), "t.toml").unwrap();
        let tls = ok.backends[0].tls.clone().unwrap();
        assert!(!tls.verify && tls.server_name);
        let err = load_str(&cfg("h2c", ""), "t.toml").unwrap_err();
        assert!(err.message.contains("grpcs"), "{err}");
        let err = load_str(&cfg("grpc", "verify = true"), "t.toml").unwrap_err();
        assert!(err.message.contains("trusted_certificate"), "{err}");
        let err = load_str(
            &cfg("grpc", "trusted_certificate = \"/nonexistent/ca.pem\""),
            "t.toml",
        )
        .unwrap_err();
        assert!(err.message.contains("cannot read"), "{err}");
        let err = load_str(&cfg("grpc", "name = \"bad name\""), "t.toml").unwrap_err();
        assert!(err.message.contains("not a DNS name"), "{err}");
        let err = load_str(&cfg("grpc", "verfy = true"), "t.toml").unwrap_err();
        assert!(err.message.contains("verfy"), "{err}");
    }
}
