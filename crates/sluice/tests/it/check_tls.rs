//! `sluice check` and `sluice run` against broken TLS files, through the real binary: a garbage
//! certificate, a key that is not the certificate's, a key file given as the certificate, a
//! second certificate SNI can never select, ticket key files of 0/79/160 bytes. Each must fail
//! naming `file:line:col` of the config key that names the bad file, and the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{sluice_bin, write_file, ChildGuard, SluiceProcess, DEADLINE};

/// Writes a self-signed certificate for `names` and its key as `NAME.crt`, `NAME.key`.
fn pair(dir: &Path, name: &str, names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let c = write_file(dir, &format!("{name}.crt"), &cert.pem());
    let k = write_file(dir, &format!("{name}.key"), &key.serialize_pem());
    (c.display().to_string(), k.display().to_string())
}

/// Files of one `[frontend.tls]` table.
struct Tls {
    cert: String,
    key: String,
    /// `certs = [...]`: (cert, key).
    more: Vec<(String, String)>,
    ticket: Option<String>,
}

/// A config with an http frontend on 127.0.0.1:0 using `tls`; returns its path and text.
fn config(dir: &Path, name: &str, tls: &Tls) -> (PathBuf, String) {
    let mut text = format!(
        "[global]\nmax_connections = 100\n\n\
         [[frontend]]\nname = \"edge\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
         [frontend.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        tls.cert, tls.key
    );
    if let Some(t) = &tls.ticket {
        text += &format!("ticket_keys = [\"{t}\"]\n");
    }
    if !tls.more.is_empty() {
        let pairs: Vec<String> = tls
            .more
            .iter()
            .map(|(c, k)| format!("{{ cert = \"{c}\", key = \"{k}\" }}"))
            .collect();
        text += &format!("certs = [{}]\n", pairs.join(", "));
    }
    text += "\n[[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n\
             servers = [{ addr = \"unix:/tmp/sluice-check-tls.sock\" }]\n";
    (write_file(dir, name, &text), text)
}

/// `file:line:col` of `needle`'s first occurrence in `text`, plus `skip` characters.
fn position(file: &Path, text: &str, needle: &str, skip: usize) -> String {
    let at = text.find(needle).expect("needle in config") + skip;
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{}:{line}:{col}: ", file.display())
}

/// `sluice check --config FILE`: (success, stdout + stderr).
fn check(file: &Path) -> (bool, String) {
    let out = Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(file)
        .output()
        .expect("run sluice check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `sluice run --config FILE`, which must exit non-zero (within `DEADLINE`); its stderr.
fn run_refuses(file: &Path) -> String {
    let mut child = ChildGuard(
        Command::new(sluice_bin())
            .args(["run", "--config"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice run"),
    );
    let end = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = child.0.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < end,
            "sluice run {} kept running",
            file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "sluice run exited 0: {err}");
    err
}

/// Both `check` and `run` refuse `file`, naming `want_at` (file:line:col), `key` and `reason`.
fn refused(file: &Path, want_at: &str, key: &str, reason: &str) {
    let (ok, out) = check(file);
    assert!(!ok, "check said OK: {out}");
    let want = format!("{want_at}{key}: ");
    assert!(out.starts_with(&want), "check: want {want:?}..., got {out}");
    assert!(out.contains(reason), "check: want {reason:?} in {out}");
    let err = run_refuses(file);
    assert!(err.contains(&want), "run: want {want:?}, got {err}");
    assert!(err.contains(reason), "run: want {reason:?} in {err}");
}

#[test]
fn check_and_run_refuse_bad_certificates_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = pair(d, "a", &["a.test"]);
    let (_, other_key) = pair(d, "b", &["b.test"]);
    let garbage = write_file(d, "garbage.crt", "this is not a certificate\n");
    let garbage = garbage.display().to_string();
    let tls = |cert: &str, key: &str| Tls {
        cert: cert.into(),
        key: key.into(),
        more: Vec::new(),
        ticket: None,
    };

    let (good, _) = config(d, "good.toml", &tls(&cert, &key));
    let (ok, out) = check(&good);
    assert!(ok && out.contains(": OK ("), "{out}");

    let (file, text) = config(d, "garbage.toml", &tls(&garbage, &key));
    let at = position(&file, &text, "cert = \"", 7);
    refused(&file, &at, "frontend[0].tls.cert", "no CERTIFICATE block");

    let (file, text) = config(d, "mismatch.toml", &tls(&cert, &other_key));
    let at = position(&file, &text, "key = \"", 6);
    refused(
        &file,
        &at,
        "frontend[0].tls.key",
        "does not belong to certificate",
    );

    let (file, text) = config(d, "key-as-cert.toml", &tls(&key, &key));
    let at = position(&file, &text, "cert = \"", 7);
    refused(&file, &at, "frontend[0].tls.cert", "no CERTIFICATE block");

    // A second certificate without DNS names: SNI could never select it.
    let (ip_cert, ip_key) = pair(d, "ip", &["127.0.0.1"]);
    let mut t = tls(&cert, &key);
    t.more = vec![(ip_cert.clone(), ip_key)];
    let (file, text) = config(d, "no-sni.toml", &t);
    let at = position(&file, &text, &format!("\"{ip_cert}\""), 0);
    refused(
        &file,
        &at,
        "frontend[0].tls.certs[0].cert",
        "SNI can never select it",
    );

    // A second pair whose key is not its certificate's points at that key.
    let mut t = tls(&cert, &key);
    t.more = vec![(d.join("b.crt").display().to_string(), key.clone())];
    let (file, text) = config(d, "pair-mismatch.toml", &t);
    let at = position(&file, &text, &format!("key = \"{key}\" }}"), 6);
    refused(
        &file,
        &at,
        "frontend[0].tls.certs[0].key",
        "does not belong to certificate",
    );
}

#[test]
fn check_and_run_refuse_ticket_keys_of_the_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = pair(d, "a", &["a.test"]);
    for len in [0usize, 79, 160, 48, 80] {
        let ticket = d.join(format!("ticket{len}"));
        std::fs::write(&ticket, vec![7u8; len]).unwrap();
        let ticket = ticket.display().to_string();
        let tls = Tls {
            cert: cert.clone(),
            key: key.clone(),
            more: Vec::new(),
            ticket: Some(ticket.clone()),
        };
        let (file, text) = config(d, &format!("ticket{len}.toml"), &tls);
        if len == 48 || len == 80 {
            let (ok, out) = check(&file);
            assert!(ok, "{len} bytes is a valid key: {out}");
            continue;
        }
        let at = position(&file, &text, &format!("\"{ticket}\""), 0);
        refused(
            &file,
            &at,
            "frontend[0].tls.ticket_keys[0]",
            &format!("is {len} bytes, expected 80 or 48"),
        );
    }
}

#[test]
fn run_serves_a_config_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(dir.path(), "a", &["a.test"]);
    let ticket = write_file(dir.path(), "ticket", &"k".repeat(80));
    let tls = Tls {
        cert,
        key,
        more: Vec::new(),
        ticket: Some(ticket.display().to_string()),
    };
    let (file, _) = config(dir.path(), "good.toml", &tls);
    assert!(check(&file).0);
    let sluice = SluiceProcess::start(&file, 1);
    assert_eq!(sluice.addr("edge").ip().to_string(), "127.0.0.1");
}
