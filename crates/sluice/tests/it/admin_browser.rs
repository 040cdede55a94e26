//! The stats page in headless Chromium against a running sluice binary: the page's JS renders
//! one table with both servers, a click on "drain" (the page's documented `?click=` hook)
//! drains the server as the API then reports, and a screenshot lands in
//! target/test-artifacts/stats.png. Skips loudly without chromium (fails in CI).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::admin::*;
use crate::support::*;

/// Longest a single chromium run may take before the test kills it and fails.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

/// Runs chromium headless on `url` with `extra` flags; returns stdout (the DOM with
/// `--dump-dom`). Each run gets its own profile directory.
fn chromium(bin: &Path, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--virtual-time-budget=5000",
        ])
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
    let (s1, s2) = (
        NamedServer::start(lo, "s1").await,
        NamedServer::start(lo, "s2").await,
    );
    let cfg = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\n\n\
         [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\n\
         [[backend]]\nname = \"be\"\nbalance = \"leastconn\"\n\
         servers = [{{ name = \"s1\", addr = \"{}\" }}, {{ name = \"s2\", addr = \"{}\" }}]\n",
        s1.addr, s2.addr
    );
    let (sl, admin) = start(dir.path(), &cfg, 1).await;
    // One open connection so the page has a live counter to show.
    let mut c = client(sl.addr("fe")).await;
    read_line(&mut c).await.unwrap();
    let base = format!("http://{admin}");

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

    // The page clicks its own "drain" button for be/s1 (the ?click= hook), which POSTs.
    let b = bin.clone();
    let url = format!("{base}/?click=drain:be/s1");
    let dom = tokio::task::spawn_blocking(move || chromium(&b, &url, &["--dump-dom"]))
        .await
        .unwrap();
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
    tokio::task::spawn_blocking(move || chromium(&b, &url, &[&arg, "--window-size=1200,800"]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(png.len() > 5_000, "suspiciously small screenshot");
    eprintln!("stats page screenshot: {}", shot.display());
}
