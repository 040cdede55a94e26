//! The stats page in headless Chromium against a running sluice binary: the page's JS renders
//! the process row, the frontend rows (a held connection counted), the backends with a backup
//! server, a down server's state-since and check detail; a cross-origin page (127.0.0.2) that
//! tries to drain a server (iframe GET, form POST, fetch POSTs) must not; a click on the real
//! "drain" button (over DevTools) drains it as the API then reports; a screenshot lands in
//! target/test-artifacts/stats.png. An open page drops the rows a reload removed. Skips
//! loudly without chromium (fails in CI).
#[path = "admin_browser/cdp.rs"]
mod cdp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::admin::*;
use crate::support::*;

/// The flags every headless Chromium of these tests runs with (no sandbox: CI runs as root).
const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
];

/// Longest a single chromium run may take before the test kills it and fails.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

/// Runs chromium headless on `url` with `extra` flags; returns stdout (the DOM with
/// `--dump-dom`). Each run gets its own profile directory.
fn chromium(bin: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(bin)
        .args(HEADLESS)
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut guard = ChildGuard(child);
    let end = Instant::now() + CHROMIUM_DEADLINE;
    loop {
        if let Some(status) = guard.0.try_wait().expect("wait chromium") {
            assert!(status.success(), "chromium failed on {url}: {status}");
            break;
        }
        assert!(
            Instant::now() < end,
            "chromium did not finish {url} in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// target/test-artifacts, next to the directory holding this test binary's deps/.
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-HASH
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The text of the cell with `attr="col"` in the element with id `row` (a table row).
fn cell(dom: &str, row: &str, col: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{row}\""))?;
    let tr = &dom[at..at + dom[at..].find("</tr>")?];
    let c = tr.find(&format!("{attr}=\"{col}\""))?;
    let text = &tr[c + tr[c..].find('>')? + 1..];
    Some(text[..text.find('<')?].to_string())
}

fn row_class(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..at + dom[at..].find('>')?];
    let c = tag.find("class=\"")? + "class=\"".len();
    Some(tag[c..c + tag[c..].find('"')?].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_page_renders_and_drains_in_headless_chromium() {
    let Some(bin) = tool(
        "chromium",
        &["chromium", "chromium-browser", "google-chrome"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (s1, s2, s3) = (
        NamedServer::start(lo, "s1").await,
        NamedServer::start(lo, "s2").await,
        NamedServer::start(lo, "s3").await,
    );
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[frontend]]\nname = \"chk\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"checked\"\n\n\
         [[backend]]\nname = \"be\"\nbalance = \"leastconn\"\n\
         servers = [{{ name = \"s1\", addr = \"{}\" }}, {{ name = \"s2\", addr = \"{}\" }}, \
         {{ name = \"s3\", addr = \"{}\", backup = true }}]\n\n\
         [[backend]]\nname = \"checked\"\n\
         health = {{ interval = \"50ms\", timeout = \"500ms\", rise = 1, fall = 1 }}\n\
         servers = [{{ name = \"gone\", addr = \"{}\" }}]\n",
        s1.addr,
        s2.addr,
        s3.addr,
        crate::support::edge::dead_addr()
    );
    let (sl, admin) = start(dir.path(), &cfg, 2).await;
    // One open connection so the page has a live counter to show.
    let mut c = client(sl.addr("fe")).await;
    read_line(&mut c).await.unwrap();
    let base = format!("http://{admin}");
    // The dead server is down before the page loads (no race with its first check).
    let end = tokio::time::Instant::now() + DEADLINE;
    while !http(admin, "GET", "/stats.json", &[], "")
        .await
        .1
        .contains("\"status\":\"DOWN\"")
    {
        assert!(tokio::time::Instant::now() < end, "gone never went down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let b = bin.clone();
    let url = format!("{base}/");
    let dom = tokio::task::spawn_blocking(move || chromium(&b, &url, &["--dump-dom"]))
        .await
        .unwrap();
    assert!(
        dom.contains("backend be (leastconn"),
        "no table for be:\n{dom}"
    );
    assert_eq!(row_class(&dom, "srv-be/s1").as_deref(), Some("up"), "{dom}");
    assert_eq!(row_class(&dom, "srv-be/s2").as_deref(), Some("up"), "{dom}");
    assert!(dom.contains(&s1.addr.to_string()), "server address shown");
    // The process row, the frontend rows, the backup flag, state-since and check detail.
    assert_eq!(
        cell(&dom, "process-row", "pid", "data-p").as_deref(),
        Some(sl.pid().to_string().as_str()),
        "{dom}"
    );
    let version = cell(&dom, "process-row", "version", "data-p");
    assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(
        cell(&dom, "fe-fe", "current", "data-col").as_deref(),
        Some("1")
    );
    assert_eq!(
        cell(&dom, "fe-fe", "total", "data-col").as_deref(),
        Some("1")
    );
    assert_eq!(
        cell(&dom, "fe-fe", "limit", "data-col").as_deref(),
        Some("100")
    );
    assert_eq!(
        cell(&dom, "fe-chk", "mode", "data-col").as_deref(),
        Some("tcp")
    );
    assert_eq!(
        cell(&dom, "srv-be/s3", "bck", "data-col").as_deref(),
        Some("Y")
    );
    assert_eq!(
        cell(&dom, "srv-be/s1", "bck", "data-col").as_deref(),
        Some("")
    );
    assert_eq!(
        cell(&dom, "betot-be", "name", "data-col").as_deref(),
        Some("BACKEND")
    );
    assert_eq!(row_class(&dom, "srv-checked/gone").as_deref(), Some("down"));
    let check = cell(&dom, "srv-checked/gone", "check", "data-col").unwrap_or_default();
    assert!(check.starts_with("L4CON in "), "{check}");
    assert_eq!(
        cell(&dom, "srv-checked/gone", "detail", "data-col").as_deref(),
        Some("connection refused")
    );
    let since = cell(&dom, "srv-checked/gone", "since_s", "data-col").unwrap_or_default();
    assert!(since.ends_with('s') && since.len() >= 2, "since {since:?}");
    assert!(dom.contains("href=\"/;csv\""), "CSV link");
    assert!(dom.contains("href=\"/stats.json\""), "JSON link");

    // A page on another origin tries every way a browser lets it: nothing changes.
    let (evil, done) = attacker(&base).await;
    // Real time (not --virtual-time-budget, which can end before the frame's own script
    // runs): the page says when its attempts are over.
    let url = format!("http://{evil}/");
    let attack = cdp::Browser::open(&bin, &url).await;
    let attack_dom = attack.eval(&url, ATTACK_OVER).await;
    let attack_dom = attack_dom.as_str().unwrap_or("").to_string();
    drop(attack);
    wait_until("the attack page reported it ran", || {
        done.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    assert!(attack_dom.contains("attempts done"), "{attack_dom}");
    let now = backends(admin).await;
    assert_eq!(
        state_of(&now, "be", "s1"),
        "up",
        "cross-origin page changed state"
    );
    assert_eq!(
        state_of(&now, "be", "s2"),
        "up",
        "cross-origin page changed state"
    );

    // A user clicks the real "drain" button for be/s1, which POSTs.
    let browser = cdp::Browser::open(&bin, &format!("{base}/")).await;
    let dom = browser.eval(&base, CLICK_DRAIN_S1).await;
    let dom = dom
        .as_str()
        .unwrap_or_else(|| panic!("no DOM from the page: {dom}"))
        .to_string();
    drop(browser);
    assert_eq!(
        state_of(&backends(admin).await, "be", "s1"),
        "drain",
        "the click did not drain s1; page:\n{dom}"
    );
    assert_eq!(
        row_class(&dom, "srv-be/s1").as_deref(),
        Some("drain"),
        "{dom}"
    );
    assert!(
        dom.contains("is now drain"),
        "status line reports the change:\n{dom}"
    );

    let shot = artifacts_dir().join("stats.png");
    let _ = std::fs::remove_file(&shot);
    let b = bin.clone();
    let url = format!("{base}/");
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || chromium(&b, &url, &[&arg, "--window-size=1700,900"]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 5_000, "suspiciously small screenshot");
    eprintln!("stats page screenshot: {}", shot.display());
}

/// Frontends `fe` and (with `old`) `old`, both over backend `be`: s1, and s2 (with `old`);
/// without `[global]` (`start` adds it).
fn reload_config(s1: SocketAddr, s2: SocketAddr, old: bool) -> String {
    let (fe_old, srv_old) = if old {
        (
            "[[frontend]]\nname = \"old\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n"
                .to_string(),
            format!(", {{ name = \"s2\", addr = \"{s2}\" }}"),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n{fe_old}\
         [[backend]]\nname = \"be\"\nservers = [{{ name = \"s1\", addr = \"{s1}\" }}{srv_old}]\n"
    )
}

/// The page's DOM once it shows the rows of `old` and `be/s2`; null before.
const SHOWS_OLD: &str = r#"(() => document.getElementById("fe-old") &&
  document.getElementById("srv-be/s2") ? document.documentElement.outerHTML : null)()"#;

/// The page's DOM once the rows of `old` and `be/s2` are gone (and `fe`, `be/s1` are shown);
/// null before.
const OLD_GONE: &str = r#"(() => !document.getElementById("fe-old") &&
  !document.getElementById("srv-be/s2") && document.getElementById("fe-fe") &&
  document.getElementById("srv-be/s1") ? document.documentElement.outerHTML : null)()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stats_page_drops_what_a_reload_removed() {
    let Some(bin) = tool(
        "chromium",
        &["chromium", "chromium-browser", "google-chrome"],
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (s1, s2) = (
        NamedServer::start(lo, "s1").await,
        NamedServer::start(lo, "s2").await,
    );
    let (sl, admin) = start(dir.path(), &reload_config(s1.addr, s2.addr, true), 2).await;
    let base = format!("http://{admin}");
    let browser = cdp::Browser::open(&bin, &format!("{base}/")).await;
    browser.eval(&base, SHOWS_OLD).await;

    // The page stays open while a reload removes frontend `old` and server `s2`.
    let cfg = format!("{GLOBAL}{}", reload_config(s1.addr, s2.addr, false));
    write_file(dir.path(), "sluice.toml", &cfg);
    sl.signal(rustix::process::Signal::HUP).unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    while http(admin, "GET", "/stats.json", &[], "")
        .await
        .1
        .contains("\"old\"")
    {
        assert!(
            tokio::time::Instant::now() < end,
            "the reload never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dom = browser.eval(&base, OLD_GONE).await;
    let dom = dom.as_str().unwrap_or_default();
    assert!(dom.contains("backend be ("), "{dom}");
}

/// The attack page's DOM once it says its attempts are over; null before.
const ATTACK_OVER: &str = r#"(() => {
  const out = document.getElementById("out");
  return out && out.textContent === "attempts done" ? document.documentElement.outerHTML : null;
})()"#;

/// Null while the stats page is not loaded yet; then waits for the button, clicks it, waits for the status line and the row to show the
/// answer, and returns the DOM (each wait bounded, well inside the support deadline).
const CLICK_DRAIN_S1: &str = r#"(async () => {
  if (!document.getElementById("backends")) return null;
  const until = async (ok) => {
    for (let i = 0; i < 120 && !ok(); i++) await new Promise(r => setTimeout(r, 50));
  };
  const sel = 'button[data-action="drain"][data-backend="be"][data-server="s1"]';
  await until(() => document.querySelector(sel));
  document.querySelector(sel).click();
  await until(() => document.getElementById("action").textContent.includes("is now") &&
                    document.getElementById("srv-be/s1").className === "drain");
  return document.documentElement.outerHTML;
})()"#;

/// The attacker's page: an iframe of the admin page with the old `?click=` hook, a form POST
/// (text/plain, as forms can send cross-origin without a preflight), a no-cors fetch POST and a
/// JSON fetch POST; then it tells its own server it is done.
fn attack_page(admin: &str) -> String {
    let target = format!("{admin}/api/backends/be/servers/s1");
    format!(
        r#"<!doctype html><html><body>
<iframe id="frame" src="{admin}/?click=drain:be/s1"></iframe>
<iframe name="sink" id="sink"></iframe>
<form id="f" method="POST" action="{target}" enctype="text/plain" target="sink">
<input name='{{"state":"drain","x":"' value='"}}'></form>
<div id="out"></div>
<script>
const loaded = (id) => new Promise(r => document.getElementById(id).addEventListener("load", r));
(async () => {{
  const frame = loaded("frame"), sink = loaded("sink");
  document.getElementById("f").submit();
  const body = JSON.stringify({{ state: "drain" }});
  await fetch("{target}", {{ method: "POST", mode: "no-cors", body,
                             headers: {{ "Content-Type": "text/plain" }} }}).catch(() => {{}});
  await fetch("{target}", {{ method: "POST", body,
                             headers: {{ "Content-Type": "application/json" }} }}).catch(() => {{}});
  await Promise.race([Promise.all([frame, sink]), new Promise(r => setTimeout(r, 3000))]);
  // Time for the framed page's own script (the old hook clicked after its first refresh).
  await new Promise(r => setTimeout(r, 2000));
  document.getElementById("out").textContent = "attempts done";
  await fetch("/done").catch(() => {{}});
}})();
</script></body></html>"#
    )
}

/// Serves the attack page on 127.0.0.2 (another origin than the admin's 127.0.0.1); the flag
/// is set when the page fetches `/done`.
async fn attacker(
    admin: &str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let page = attack_page(admin);
    let flag = done.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let page = page.clone();
            let flag = flag.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let body = if head.starts_with(b"GET /done ") {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    String::new()
                } else {
                    page
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, done)
}
