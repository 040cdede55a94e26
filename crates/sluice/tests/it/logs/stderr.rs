//! The process log on the real binary: with `--log-format json` every stderr line is one flat
//! object (`timestamp`, `level`, `target`, `message` and fields at the top level) and access
//! and connection records keep their own fields; `access_log_stderr = false` keeps a
//! frontend's lines off stderr, and `RUST_LOG=...,sluice::conn=off` does it for all.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::support::edge::{raw_request, status_of, uwsgi_app};
use crate::support::*;

use super::{echo_backend, echo_once, tcp_frontend};

/// Every stderr line of a child so far.
type Lines = Arc<Mutex<Vec<String>>>;

/// `sluice [--log-format json] run -c CONFIG` with `RUST_LOG`; waits for `n` listening lines.
fn spawn(
    config: &std::path::Path,
    json: bool,
    rust_log: &str,
    n: usize,
) -> (ChildGuard, Vec<(String, SocketAddr)>, Lines) {
    let mut cmd = Command::new(sluice_bin());
    if json {
        cmd.args(["--log-format", "json"]);
    }
    let mut child = cmd
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", rust_log)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[sluice] {line}");
            sink.lock().unwrap().push(line);
        }
    });
    let guard = ChildGuard(child);
    let listening = |l: &String| -> Option<(String, SocketAddr)> {
        if json {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "listening").then_some(())?;
            Some((
                v["frontend"].as_str()?.into(),
                v["addr"].as_str()?.parse().ok()?,
            ))
        } else {
            parse_listening(l)
        }
    };
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let found: Vec<_> = lines.lock().unwrap().iter().filter_map(listening).collect();
        if found.len() >= n {
            return (guard, found, lines);
        }
        assert!(
            std::time::Instant::now() < end,
            "no {n} listening lines: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn addr(addrs: &[(String, SocketAddr)], fe: &str) -> SocketAddr {
    addrs
        .iter()
        .find(|(f, _)| f == fe)
        .map(|(_, a)| *a)
        .expect(fe)
}

async fn wait_line(lines: &Lines, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let mut found = None;
    wait_until(what, || {
        found = lines.lock().unwrap().iter().find(|l| cond(l)).cloned();
        found.is_some()
    })
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_process_log_is_flat_and_records_keep_their_fields() {
    let echo = echo_server("127.0.0.10".parse().unwrap()).await;
    let uw = uwsgi_app().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "sluice.toml",
        &format!(
            "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}\
             [[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\n\
             [[frontend]]\nname = \"pp\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"app\"\n\
             proxy_protocol = {{ trusted = [\"127.0.0.10/32\"] }}\n\n{}\
             [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n",
            tcp_frontend("lb", ""),
            echo_backend(echo)
        ),
    );
    let (_child, addrs, lines) = spawn(&cfg, true, "info", 3);
    echo_once(addr(&addrs, "lb")).await;
    let r = raw_request(
        addr(&addrs, "web"),
        b"GET /j HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "200", "{r}");
    // 127.0.0.2 is not trusted to send a PROXY header: the edge closes the connection.
    raw_request(
        addr(&addrs, "pp"),
        b"PROXY TCP4 203.0.113.7 127.0.0.1 4000 80\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    let rejected = wait_line(&lines, "a proxy_rejected record", |l| {
        l.contains("\"end\":\"proxy_rejected\"")
    })
    .await;
    let rejected: serde_json::Value = serde_json::from_str(&rejected).unwrap();
    assert_eq!(rejected["target"], "sluice::conn");
    assert_eq!(rejected["frontend"], "pp");
    assert_eq!(rejected["code"], "untrusted");
    assert!(
        rejected["peer"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{rejected}"
    );
    assert!(rejected.get("message").is_none(), "{rejected}");
    // The connection line, not the PROXY rejection (same target) logged around it.
    let conn = wait_line(&lines, "a connection record", |l| {
        l.contains("\"sluice::conn\"") && !l.contains("\"proxy_rejected\"")
    })
    .await;
    let access = wait_line(&lines, "an access record", |l| {
        l.contains("\"sluice::access\"")
    })
    .await;

    let conn: serde_json::Value = serde_json::from_str(&conn).unwrap();
    assert_eq!(conn["level"], "INFO");
    assert!(
        conn["client"].as_str().unwrap().starts_with("127.0.0.2:"),
        "{conn}"
    );
    assert_eq!(conn["frontend"], "lb");
    assert_eq!(conn["server"], "s1");
    assert_eq!(conn["bytes_in"], 4);
    assert_eq!(conn["end"], "client_close");
    assert_eq!(conn["termination_state"], "--");
    assert!(
        conn["time_iso8601"].is_string() && conn["accept_date"].is_string(),
        "{conn}"
    );
    let access: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(access["remote_addr"], "127.0.0.2");
    assert_eq!(access["request"], "GET /j HTTP/1.1");
    assert_eq!(access["status"], 200);
    for rec in [&conn, &access] {
        assert!(
            rec.get("fields").is_none() && rec.get("message").is_none(),
            "{rec}"
        );
        assert!(rec["timestamp"].as_str().unwrap().ends_with('Z'), "{rec}");
    }
    for line in lines.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v.get("fields").is_none(), "nested fields: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_on_stderr_are_a_switch() {
    let echo = echo_server("127.0.0.10".parse().unwrap()).await;
    let uw = uwsgi_app().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cfg = write_file(
        dir.path(),
        "sluice.toml",
        &format!(
            "[global]\nmax_connections = 100\ngrace = \"1s\"\n\n{}{}\
             [[frontend]]\nname = \"quiet_web\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\n\
             backend = \"app\"\naccess_log = \"{d}/web.log\"\naccess_log_stderr = false\n\n{}\
             [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n",
            tcp_frontend("loud", &format!("access_log = \"{d}/loud.log\"")),
            tcp_frontend(
                "quiet",
                &format!("access_log = \"{d}/quiet.log\"\naccess_log_stderr = false")
            ),
            echo_backend(echo)
        ),
    );
    let (_child, addrs, lines) = spawn(&cfg, false, "info", 3);
    // An http frontend's access lines: only in its file.
    let r = raw_request(
        addr(&addrs, "quiet_web"),
        b"GET /q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), "200", "{r}");
    wait_for_log_line(&dir.path().join("web.log"), &["GET /q "]).await;
    // The stderr line is written before the file line: once the file has it, stderr would too.
    echo_once(addr(&addrs, "quiet")).await;
    wait_for_log_line(&dir.path().join("quiet.log"), &["frontend=quiet"]).await;
    echo_once(addr(&addrs, "loud")).await;
    wait_for_log_line(&dir.path().join("loud.log"), &["frontend=loud"]).await;
    let conn_of = |fe: &'static str| move |l: &str| l.contains("sluice::conn") && l.contains(fe);
    wait_line(&lines, "loud's line on stderr", conn_of("frontend=loud")).await;
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| conn_of("frontend=quiet")(l) || l.contains("sluice::access")),
        "{:?}",
        lines.lock().unwrap()
    );

    // The process-wide switch: a RUST_LOG target filter.
    let (_child, addrs, lines) = spawn(&cfg, false, "info,sluice::conn=off", 3);
    echo_once(addr(&addrs, "loud")).await;
    let log = dir.path().join("loud.log");
    wait_until("a second line in loud.log", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("sluice::conn")),
        "{:?}",
        lines.lock().unwrap()
    );
}
