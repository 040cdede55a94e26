//! h2spec (the HTTP/2 conformance suite) against a TLS edge in front of a uwsgi app: every
//! one of its 146 cases must pass; failures are listed by id (e.g. `http2/3.5/2`). The binary
//! comes from $SLUICE_H2SPEC, then PATH, then ${TMPDIR:-/tmp}/h2spec (`.ci/h2spec/build.sh`
//! builds it); without it the test skips loudly unless SLUICE_REQUIRE_INTEROP=1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::edge::*;
use crate::support::*;

/// How many cases h2spec 2.x runs without `-S` (generic, http2, hpack).
const CASES: usize = 146;
/// Upper bound for the whole run (about 2 s when the edge behaves; each case may wait up
/// to `-o 3` seconds when it does not).
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The h2spec binary, or None after a SKIP line (a panic when interop is required).
fn find_h2spec() -> Option<PathBuf> {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os("SLUICE_H2SPEC") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        looked.push(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("h2spec");
            if p.is_file() {
                return Some(p);
            }
        }
        looked.push("h2spec in PATH".into());
    }
    let tmp = std::env::var_os("TMPDIR").unwrap_or_else(|| "/tmp".into());
    let p = Path::new(&tmp).join("h2spec");
    if p.is_file() {
        return Some(p);
    }
    looked.push(p);
    skip(&format!(
        "h2spec (looked at {looked:?}; build it with .ci/h2spec/build.sh)"
    ));
    None
}

/// The ids (`package/index`) of the failed or errored cases in h2spec's JUnit report.
fn failed_ids(junit: &str) -> Vec<String> {
    let mut out = Vec::new();
    for suite in junit.split("<testsuite ").skip(1) {
        let package = attr(suite, "package").unwrap_or("?");
        let body = suite.split("</testsuite>").next().unwrap_or("");
        for (i, case) in body.split("<testcase ").skip(1).enumerate() {
            let case = case.split("</testcase>").next().unwrap_or("");
            if case.contains("<failure") || case.contains("<error") {
                let desc = attr(case, "classname").unwrap_or("");
                out.push(format!("{package}/{} ({desc})", i + 1));
            }
        }
    }
    out
}

/// The value of `name="..."` in the tag text at the start of `s`.
fn attr<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let tag = s.split('>').next()?;
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// h2spec's summary line: `146 tests, 145 passed, 0 skipped, 1 failed` -> the four numbers.
fn summary(stdout: &str) -> Option<[usize; 4]> {
    let line = stdout.lines().rev().find(|l| l.contains(" tests, "))?;
    let nums: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .filter_map(|t| t.parse().ok())
        .collect();
    nums.try_into().ok()
}

#[test]
fn junit_and_summary_parsing() {
    let junit = r#"<testsuites>
  <testsuite name="3.5. HTTP/2 Connection Preface" package="http2/3.5" id="3.5" tests="2" skipped="0" failures="1" errors="0">
    <testcase package="http2/3.5" classname="Sends client connection preface" time="0.0010"></testcase>
    <testcase package="http2/3.5" classname="Sends invalid connection preface" time="0.0011">
      <failure>Expect:
GOAWAY Frame (Error Code: PROTOCOL_ERROR)
Actual:
Error: unexpected EOF</failure>
    </testcase>
  </testsuite>
  <testsuite name="6.1. DATA" package="http2/6.1" id="6.1" tests="1" skipped="0" failures="0" errors="0">
    <testcase package="http2/6.1" classname="x" time="0.1"></testcase>
  </testsuite>
</testsuites>"#;
    assert_eq!(
        failed_ids(junit),
        ["http2/3.5/2 (Sends invalid connection preface)"]
    );
    assert_eq!(
        summary("...\nFinished in 1.2 seconds\n146 tests, 145 passed, 0 skipped, 1 failed\n"),
        Some([146, 145, 0, 1])
    );
    assert_eq!(summary("nothing"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2spec_passes_every_case_against_a_tls_edge() {
    let Some(h2spec) = find_h2spec() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (c, k, _) = cert(dir.path());
    let uw = uwsgi_app().await;
    let cfg = format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"tls\"\nmode = \"http\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\
         access_log = \"{d}/tls.log\"\n\
         tls = {{ cert = \"{c}\", key = \"{k}\" }}\n\n\
         [[backend]]\nname = \"app\"\nprotocol = \"uwsgi\"\n[[backend.servers]]\naddr = \"{uw}\"\n",
        d = dir.path().display(),
        c = c.display(),
        k = k.display(),
    );
    let sl = Sluice::start(&cfg).await;
    let port = sl.addr("tls").port().to_string();
    let junit = dir.path().join("h2spec.xml");
    let run = tokio::process::Command::new(&h2spec)
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "-k", "-o", "3"])
        .arg("--junit-report")
        .arg(&junit)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("h2spec ran longer than {RUN_LIMIT:?}"))
        .expect("run h2spec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = std::fs::read_to_string(&junit).unwrap_or_default();
    let failed = failed_ids(&report);
    let tail: String = {
        let at = stdout
            .find("Failures:")
            .unwrap_or(stdout.len().saturating_sub(4000));
        let at = (at..stdout.len())
            .find(|&i| stdout.is_char_boundary(i))
            .unwrap_or(stdout.len());
        stdout[at..].chars().take(8000).collect()
    };
    let counts = summary(&stdout);
    eprintln!("h2spec: {counts:?} (tests, passed, skipped, failed)");
    assert!(
        failed.is_empty() && counts == Some([CASES, CASES, 0, 0]) && out.status.success(),
        "h2spec: {counts:?} (tests, passed, skipped, failed), exit {}; failed: {failed:#?}\n{tail}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    sl.shutdown().await;
}
