//! Checks of the client certificate keys of a `[frontend.tls]` table (`client_ca`,
//! `client_verify`, `client_verify_depth`, `client_crl`, `pass_client_cert`): combinations
//! that cannot work and the depth rustls-webpki can build; and of its ticket keys
//! (`ticket_keys` or `ticket_secret`, `ticket_rotation`). It reads no file (the CA, CRL and
//! secrets are read by `tls::check_files`, as `run` loads them).

use super::model::{ClientVerify, Tls};
use super::spans::{At, KeyPath};
use super::validate::Issue;

/// Most intermediate CA certificates rustls-webpki puts in a path (its `MAX_SUB_CA_COUNT`).
pub(super) const MAX_VERIFY_DEPTH: u8 = 6;

/// The problems of `t`'s ticket keys; `tp` is the table's path.
fn check_tickets(t: &Tls, tp: &KeyPath, out: &mut Vec<Issue>) {
    let mut push = |key: &str, at: At, message: &str| {
        out.push(Issue {
            path: tp.key(key),
            at,
            message: message.to_string(),
        })
    };
    if t.ticket_secret.is_some() && !t.ticket_keys.is_empty() {
        push(
            "ticket_secret",
            At::Key,
            "and ticket_keys both set: choose one (a shared secret whose keys rotate by \
             themselves, or nginx key files you rotate)",
        );
    }
    if let Some(d) = t.ticket_rotation {
        let (lo, hi) = crate::spec::TICKET_ROTATION_RANGE;
        if t.ticket_secret.is_none() {
            push(
                "ticket_rotation",
                At::Key,
                "has no effect without ticket_secret",
            );
        } else if d.0 < lo || d.0 > hi {
            push(
                "ticket_rotation",
                At::Value,
                "must be 1s to 84h (a ticket lives two periods; TLS 1.3 allows 7 days)",
            );
        }
    }
}

/// The problems of `t`'s client certificate and ticket keys; `tp` is the table's path.
pub(super) fn check(t: &Tls, tp: &KeyPath, out: &mut Vec<Issue>) {
    check_tickets(t, tp, out);
    let mut push = |key: &str, at: At, message: String| {
        out.push(Issue {
            path: tp.key(key),
            at,
            message,
        })
    };
    if t.client_ca.is_none() {
        if matches!(
            t.client_verify,
            Some(ClientVerify::Optional | ClientVerify::Required)
        ) {
            push(
                "client_verify",
                At::Value,
                "needs client_ca, the PEM file of the CAs client certificates must chain to".into(),
            );
        }
        for (set, key) in [
            (t.client_crl.is_some(), "client_crl"),
            (t.pass_client_cert, "pass_client_cert"),
        ] {
            if set {
                push(
                    key,
                    At::Key,
                    "has no effect without client_ca and client_verify".into(),
                );
            }
        }
    } else if t.client_verify.is_none() {
        push(
            "client_ca",
            At::Key,
            "is set but client_verify is not: set client_verify = \"required\" or \"optional\" \
             (or \"off\" to keep the file and ask for no certificate)"
                .into(),
        );
    }
    if t.client_verify_depth > MAX_VERIFY_DEPTH {
        push(
            "client_verify_depth",
            At::Value,
            format!(
                "must be 0 to {MAX_VERIFY_DEPTH} (intermediate CA certificates; rustls builds no \
                 longer chains)"
            ),
        );
    }
}
