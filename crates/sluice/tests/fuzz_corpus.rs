//! Replays every file in fuzz/corpus/{uwsgi_response,config,host_authority}/ (seeds and any
//! kept crash-* inputs) through the same checks as the cargo-fuzz targets, on stable, in a
//! normal `cargo test`. It does not fuzz: new inputs come from `cargo fuzz run` (.ci/run).

use std::path::{Path, PathBuf};

use sluice::config::load::{load_str_with, LoadOptions};
use sluice::edge::strict::valid_authority;
use sluice::upstream::uwsgi::{framing, parse_response_head, HeadParse};

/// The files of fuzz/corpus/<target>/, at least `min` of them.
fn corpus(target: &str, min: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("dir entry").path();
        if path.is_file() {
            let data = std::fs::read(&path).expect("read corpus file");
            out.push((path, data));
        }
    }
    assert!(
        out.len() >= min,
        "expected at least {min} inputs in {}",
        dir.display()
    );
    out
}

/// The assertions of fuzz/fuzz_targets/uwsgi_response.rs.
fn check_uwsgi(data: &[u8]) {
    let (limit, buf) = match data.split_first() {
        Some((&b, rest)) => ((b as usize + 1) * 256, rest),
        None => (65536, data),
    };
    match parse_response_head(buf, limit) {
        HeadParse::Complete(head) => {
            assert!(head.len <= buf.len() && head.len <= limit);
            let _ = framing(&head, false);
            let _ = framing(&head, true);
        }
        HeadParse::Incomplete => assert!(buf.len() <= limit),
        HeadParse::Invalid(_) => {}
    }
}

/// The assertions of fuzz/fuzz_targets/config.rs.
fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = load_str_with(text, "fuzz.toml", &LoadOptions::content_only()) {
        assert!(
            e.line <= text.lines().count() + 1,
            "line {} out of range",
            e.line
        );
        let _ = e.to_string();
    }
}

fn replay(target: &str, min: usize, check: fn(&[u8])) {
    for (path, data) in corpus(target, min) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
    }
}

#[test]
fn every_uwsgi_response_corpus_file_replays_without_panic() {
    replay("uwsgi_response", 2, check_uwsgi);
}

/// The assertions of fuzz/fuzz_targets/host_authority.rs.
fn check_host(data: &[u8]) {
    if valid_authority(data).is_ok() {
        assert!(!data.is_empty());
        assert!(data.iter().all(|&b| b.is_ascii_graphic()));
        assert!(!data
            .iter()
            .any(|&b| matches!(b, b'@' | b'/' | b'\\' | b'?' | b'#')));
    }
}

#[test]
fn every_host_authority_corpus_file_replays_without_panic() {
    replay("host_authority", 4, check_host);
}

#[test]
fn every_config_corpus_file_replays_without_panic() {
    replay("config", 2, check_config);
}
