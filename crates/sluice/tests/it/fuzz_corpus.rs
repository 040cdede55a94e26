//! Replays every file in fuzz/corpus/<target>/ (seeds and any kept crash-* inputs) through
//! the very checks the cargo-fuzz targets run (`sluice::fuzz_check`), on stable, in a normal
//! `cargo test`. It does not fuzz: new inputs come from `cargo fuzz run` (.ci/run).

use std::path::{Path, PathBuf};

use sluice::fuzz_check;

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

fn replay(target: &str, min: usize, check: fn(&[u8])) {
    for (path, data) in corpus(target, min) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
    }
}

#[test]
fn every_uwsgi_response_corpus_file_replays_without_panic() {
    replay("uwsgi_response", 2, fuzz_check::uwsgi_response);
}

#[test]
fn every_fastcgi_record_corpus_file_replays_without_panic() {
    replay("fastcgi_record", 5, fuzz_check::fastcgi_record);
}

#[test]
fn every_fastcgi_head_corpus_file_replays_without_panic() {
    replay("fastcgi_head", 4, fuzz_check::fastcgi_head);
}

#[test]
fn every_host_authority_corpus_file_replays_without_panic() {
    replay("host_authority", 4, fuzz_check::host_authority);
}

#[test]
fn every_upgrade_request_corpus_file_replays_without_panic() {
    replay("upgrade_request", 4, fuzz_check::upgrade_request);
}

#[test]
fn every_request_id_corpus_file_replays_without_panic() {
    replay("request_id", 4, fuzz_check::request_id);
}

#[test]
fn every_client_dn_corpus_file_replays_without_panic() {
    replay("client_dn", 6, fuzz_check::client_dn);
}

#[test]
fn every_forwarded_header_corpus_file_replays_without_panic() {
    replay("forwarded_header", 6, fuzz_check::forwarded_header);
}

#[test]
fn every_config_corpus_file_replays_without_panic() {
    replay("config", 2, fuzz_check::config);
}

#[test]
fn every_client_hello_corpus_file_replays_and_the_seed_gives_a_hello() {
    replay("client_hello", 3, |d| {
        fuzz_check::client_hello(d);
    });
    let hellos = corpus("client_hello", 3)
        .iter()
        .filter(|(p, d)| {
            p.file_name().is_some_and(|n| n == "hello_h2") && fuzz_check::client_hello(d)
        })
        .count();
    assert_eq!(hellos, 1, "the seed ClientHello gives a hello");
}

#[test]
fn every_grpc_timeout_corpus_file_replays_without_panic() {
    replay("grpc_timeout", 6, fuzz_check::grpc_timeout);
}

#[test]
fn every_agent_reply_corpus_file_replays_without_panic() {
    replay("agent_reply", 8, fuzz_check::agent_reply);
}
