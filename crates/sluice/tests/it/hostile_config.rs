//! Hostile configuration files on the real binary: malformed TOML, wrong types, impossible
//! values, unknown keys, non-UTF-8 bytes. `sluice check` names file:line and explains each;
//! `sluice run` refuses to start (non-zero exit, nothing listening) with the same message.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A valid file; each case replaces one of its lines (1-based).
const BASE: &[&str] = &[
    "[global]",
    "max_connections = 100",
    "grace = \"1s\"",
    "",
    "[[frontend]]",
    "name = \"fe\"",
    "bind = [\"127.0.0.1:0\"]",
    "backend = \"be\"",
    "",
    "[[backend]]",
    "name = \"be\"",
    "health = { interval = \"1s\" }",
    "timeouts = { connect = \"1s\" }",
    "[[backend.servers]]",
    "addr = \"127.0.0.1:9\"",
    "weight = 1",
];

/// (line replaced, new text, a word the explanation must contain).
const CASES: &[(usize, &str, &str)] = &[
    (1, "[globall]", "globall"),
    (5, "[[frontend]", ""),
    (2, "max_connections = \"lots\"", "max_connections"),
    (2, "max_connections = 0", "max_connections"),
    (2, "max_connections = -5", "max_connections"),
    (2, "max_connections = 1e9", "max_connections"),
    (3, "grace = 30", "grace"),
    (3, "grace = \"5 parsecs\"", "grace"),
    (3, "grace = \"-1s\"", "grace"),
    (6, "name = 7", "name"),
    (7, "bind = [\"999.1.1.1:80\"]", "bind"),
    (7, "bind = \"127.0.0.1:0\"", "bind"),
    (7, "bind = [\"localhost:80\"]", "bind"),
    (8, "backend = \"nope\"", "backend"),
    (9, "mode = \"udp\"", "mode"),
    (
        9,
        "proxy_protocol = { trusted = [\"10.0.0.0/33\"] }",
        "trusted",
    ),
    (
        9,
        "proxy_protocol = { trusted = [\"10.0.0.1\"], timeout = \"0s\" }",
        "timeout",
    ),
    (9, "tls = { cert = \"c.pem\", key = \"k.pem\" }", "tls"),
    (9, "name = \"again\"", ""),
    (12, "health = { interval = \"0s\" }", "interval"),
    (12, "health = { rise = 0 }", "rise"),
    (12, "health = { kind = \"smoke\" }", "kind"),
    (
        12,
        "health = { kind = \"http\", path = \"no-slash\" }",
        "path",
    ),
    (
        12,
        "health = { kind = \"http\", expect_status = 1000 }",
        "expect_status",
    ),
    (13, "timeouts = { connect = \"0ms\" }", "connect"),
    (
        13,
        "timeouts = { connect = \"1s\", idle = \"99999999999999999d\" }",
        "idle",
    ),
    (15, "addr = \"127.0.0.1:0\"", "addr"),
    (15, "addr = \"not an address\"", "addr"),
    (15, "addr = \"127.0.0.1:99999\"", "addr"),
    (16, "weight = -1", "weight"),
    (16, "wieght = 1", "wieght"),
];

fn with_line(line: usize, text: &str) -> String {
    let mut lines: Vec<&str> = BASE.to_vec();
    lines[line - 1] = text;
    lines.join("\n") + "\n"
}

/// Runs `sluice <cmd> -c path`; `run` is killed if still alive after `DEADLINE` (it started,
/// which is a failure). Returns (exit success, stderr).
fn sluice(cmd: &str, path: &Path) -> (bool, String) {
    let mut child = Command::new(sluice_bin())
        .args([cmd, "-c"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`sluice {cmd}` still running on {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn base_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "base.toml", &(BASE.join("\n") + "\n"));
    let (ok, err) = sluice("check", &path);
    assert!(ok, "{err}");
}

#[test]
fn every_broken_file_is_explained_at_its_line_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (line, text, word)) in CASES.iter().enumerate() {
        let path = write_file(
            dir.path(),
            &format!("case{i}.toml"),
            &with_line(*line, text),
        );
        let prefix = format!("{}:{line}:", path.display());
        for cmd in ["check", "run"] {
            let (ok, err) = sluice(cmd, &path);
            assert!(!ok, "`{cmd}` accepted line {line} `{text}`");
            let said = err
                .lines()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("`{cmd}` on `{text}`: no {prefix} line in: {err}"));
            let why = &said[prefix.len()..];
            assert!(why.len() > 12, "`{text}`: too short an explanation: {said}");
            assert!(
                why.contains(word),
                "`{text}`: {said} does not mention {word}"
            );
            assert!(
                !err.contains("listening"),
                "`{cmd}` started on `{text}`: {err}"
            );
            assert!(
                !err.contains("panicked"),
                "`{cmd}` panicked on `{text}`: {err}"
            );
        }
    }
}

#[test]
fn binary_garbage_and_truncated_files_are_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let full = BASE.join("\n");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        (
            "nonutf8.toml",
            b"[global]\nmax_connections = \xff\xfe\n".to_vec(),
        ),
        ("nul.toml", b"\0\0\0\0".to_vec()),
        ("truncated.toml", full.as_bytes()[..full.len() / 2].to_vec()),
        (
            "deep.toml",
            format!("x = {}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        ),
        ("empty-server.toml", with_line(15, "").into_bytes()),
    ];
    for (name, bytes) in inputs {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        for cmd in ["check", "run"] {
            let (ok, err) = sluice(cmd, &path);
            assert!(!ok, "`{cmd}` accepted {name}");
            assert!(
                err.contains(&format!("{}:", path.display())),
                "`{cmd}` {name}: no file position: {err}"
            );
            assert!(!err.contains("panicked"), "`{cmd}` {name} panicked: {err}");
            assert!(!err.contains("listening"), "`{cmd}` {name} started: {err}");
        }
    }
}
