//! `/metrics` on the real binary after real traffic: the format follows `Accept` (0.0.4 text
//! by default, OpenMetrics when asked as Prometheus asks), `promtool check metrics` passes on
//! the 0.0.4 text, and the `process_*` / `sluice_build_info` series describe the spawned
//! process. Series meanings are `admin.rs`'s; the HELP texts are checked by a unit test.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use crate::support::admin::*;
use crate::support::*;
use tokio::io::AsyncWriteExt;

/// What Prometheus 2.x sends when scraping.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A running sluice with one tcp frontend `fe` over server `s1`, after one connection, so
/// counters, gauges and the per-server series all have samples.
async fn running(dir: &std::path::Path) -> (SluiceProcess, SocketAddr, NamedServer) {
    let s1 = NamedServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), "s1").await;
    let toml = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\n\
         health = {{ interval = \"50ms\", timeout = \"500ms\" }}\n\
         servers = [{{ name = \"s1\", addr = \"{}\" }}]\n",
        s1.addr
    );
    let (sl, admin) = start(dir, &toml, 1).await;
    let mut c = client(sl.addr("fe")).await;
    assert_eq!(read_line(&mut c).await.as_deref(), Some("s1"));
    c.write_all(b"hello").await.unwrap();
    c.shutdown().await.unwrap();
    drop(c);
    // Every family with samples: the connection ended, a health check and a response ran.
    scrape_until(
        admin,
        "sluice_frontend_current_connections{frontend=\"fe\"}",
        |v| v == 0.0,
    )
    .await;
    scrape_until(
        admin,
        "sluice_health_checks_total{backend=\"be\",server=\"s1\",result=\"ok\"}",
        |v| v >= 1.0,
    )
    .await;
    (sl, admin, s1)
}

async fn scrape(admin: SocketAddr, accept: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let (status, head, body) = http_with_head(admin, "GET", "/metrics", &headers, "").await;
    assert_eq!(status, 200, "{head}\n{body}");
    let ct = header_value(&head, "content-type")
        .expect("content-type")
        .to_string();
    assert_eq!(header_value(&head, "vary"), Some("accept"), "{head}");
    (ct, body)
}

#[tokio::test]
async fn format_follows_accept() {
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = running(dir.path()).await;

    for accept in [
        None,
        Some("*/*"),
        Some("text/plain"),
        Some("text/plain; version=0.0.4"),
    ] {
        let (ct, body) = scrape(admin, accept).await;
        assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        assert!(!body.contains("# EOF"), "{accept:?}");
        assert!(!body.contains("# UNIT"), "{accept:?}");
        assert!(body.contains("# TYPE sluice_frontend_connections_total counter\n"));
        assert_eq!(
            metric(&body, "sluice_frontend_connections_total{frontend=\"fe\"}"),
            Some(1.0)
        );
    }
    for accept in [PROMETHEUS_ACCEPT, "application/openmetrics-text"] {
        let (ct, body) = scrape(admin, Some(accept)).await;
        assert_eq!(
            ct, "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "{accept}"
        );
        assert!(body.ends_with("# EOF\n"), "{accept}");
        assert!(body.contains("# TYPE sluice_frontend_connections counter\n"));
        assert_eq!(
            metric(&body, "sluice_frontend_connections_total{frontend=\"fe\"}"),
            Some(1.0)
        );
    }
    // OpenMetrics ranked below text/plain: text.
    let (ct, _) = scrape(
        admin,
        Some("application/openmetrics-text;q=0.5, text/plain;q=0.9"),
    )
    .await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
}

#[tokio::test]
async fn promtool_accepts_the_text_format() {
    let Some(promtool) = tool("promtool (Debian package prometheus)", &["promtool"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = running(dir.path()).await;
    let (_, body) = scrape(admin, None).await;
    for family in [
        "sluice_frontend_connections_total",
        "sluice_server_state",
        "sluice_health_check_duration_seconds",
        "process_cpu_seconds_total",
        "sluice_build_info",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family}:\n{body}"
        );
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {said}\n{body}"
    );
    assert!(said.trim().is_empty(), "promtool check metrics: {said}");
}

#[tokio::test]
async fn process_series_describe_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let (sl, admin, _s1) = running(dir.path()).await;
    let (_, body) = scrape(admin, None).await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metric(
            &body,
            &format!("sluice_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0),
        "{body}"
    );
    let get = |name: &str| metric(&body, name).unwrap_or_else(|| panic!("{name}:\n{body}"));
    // The spawned binary's own numbers, from outside.
    let pid = sl.pid();
    let fds = open_fds(pid) as f64;
    let open = get("process_open_fds");
    assert!(open >= 5.0 && (open - fds).abs() <= 8.0, "{open} vs {fds}");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .expect("soft nofile");
    assert_eq!(get("process_max_fds"), soft);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_virtual_memory_bytes") >= get("process_resident_memory_bytes"));
    assert!(get("process_cpu_seconds_total") >= 0.0);
    // Started within this test (the clock's second granularity plus tick rounding).
    let start = get("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now + 5.0 && start > now - 120.0,
        "{start} vs {now}"
    );
}

/// Parses `text` with the reference Python client's parser for `format` ("openmetrics":
/// strict OpenMetrics 1.0, or "text"); returns its "family type samples" lines, sorted.
fn python_parse(python: &std::path::Path, format: &str, text: &str) -> Vec<String> {
    let module = match format {
        "openmetrics" => "prometheus_client.openmetrics.parser",
        _ => "prometheus_client.parser",
    };
    let script = format!(
        "import sys\nfrom {module} import text_string_to_metric_families as p\n\
         for f in p(sys.stdin.read()):\n    print(f.name, f.type, len(f.samples))\n"
    );
    let mut child = Command::new(python)
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "{format} parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn both_formats_parse_with_the_reference_parsers() {
    // promtool reads only the 0.0.4 format; the Python client (Debian's
    // python3-prometheus-client) has a strict OpenMetrics parser.
    let Some(python) = tool("python3", &["/usr/bin/python3", "python3"]) else {
        return;
    };
    let has_module = Command::new(&python)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_module {
        skip("python3-prometheus-client (the prometheus_client module)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_sl, admin, _s1) = running(dir.path()).await;
    let (_, om) = scrape(admin, Some(PROMETHEUS_ACCEPT)).await;
    let (_, text) = scrape(admin, None).await;
    let om_families = python_parse(&python, "openmetrics", &om);
    let text_families = python_parse(&python, "text", &text);
    assert!(
        om_families
            .iter()
            .any(|l| l.starts_with("sluice_health_check_duration_seconds histogram ")),
        "{om_families:?}"
    );
    assert!(om_families.len() >= 25, "{om_families:?}");
    // The same families, types and sample counts in both.
    assert_eq!(om_families, text_families);
}
