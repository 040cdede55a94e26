//! The seed app (examples/seed/app.py) under the real uWSGI for interop tests: whether the
//! python3 plugin and Flask are installed, its arguments, starting it on a unix socket in a
//! temp dir and waiting until that socket accepts. No assertions on the app live here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{skip, spawn_peer, ChildGuard};

/// Whether uWSGI's python3 plugin and Flask (for /usr/bin/python3) are installed, as the
/// seed app needs; false after a `skip` line.
pub fn seed_app_available() -> bool {
    if !Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so").exists() {
        skip("uwsgi python3 plugin (/usr/lib/uwsgi/plugins/python3_plugin.so)");
        return false;
    }
    let flask = Command::new("/usr/bin/python3")
        .args(["-c", "import flask"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !flask.is_ok_and(|s| s.success()) {
        skip("Flask for /usr/bin/python3 (python3-flask)");
        return false;
    }
    true
}

/// uWSGI arguments serving the seed app (examples/seed/app.py) on the unix socket `sock`.
pub fn seed_uwsgi_args(sock: &Path) -> Vec<String> {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed/app.py");
    let mut args: Vec<String> = ["--plugin", "python3", "--socket"]
        .map(String::from)
        .to_vec();
    args.push(sock.display().to_string());
    args.push("--wsgi-file".into());
    args.push(app.display().to_string());
    args.extend(
        [
            "--processes",
            "1",
            "--threads",
            "4",
            "--need-app",
            "--die-on-term",
            "--buffer-size",
            "32768",
        ]
        .map(String::from),
    );
    args
}

/// Starts uWSGI with the seed app on `<dir>/app.sock`; None after a SKIP line when the
/// plugin or Flask is missing.
pub fn start_seed_uwsgi(uwsgi: &Path, dir: &Path) -> Option<(ChildGuard, PathBuf)> {
    if !seed_app_available() {
        return None;
    }
    let sock = dir.join("app.sock");
    let args = seed_uwsgi_args(&sock);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Some((spawn_peer(uwsgi, &args, &dir.join("uwsgi.log")), sock))
}

/// Waits (30 s at most) until uWSGI's unix socket accepts; panics with its log if it exits.
pub async fn wait_unix(sock: &Path, uwsgi: &mut ChildGuard, dir: &Path) {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::UnixStream::connect(sock).await.is_ok() {
            return;
        }
        let log = || std::fs::read_to_string(dir.join("uwsgi.log")).unwrap_or_default();
        if let Ok(Some(st)) = uwsgi.0.try_wait() {
            panic!("uwsgi exited ({st}):\n{}", log());
        }
        assert!(
            tokio::time::Instant::now() < end,
            "uwsgi not ready within 30s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
