//! Replays every file in fuzz/corpus/decode/ (seeds and any kept crash-* inputs) through the
//! same checks as the cargo-fuzz `decode` target, in a normal `cargo test` on stable.
//! It does not fuzz: new inputs come from `cargo fuzz run decode` (see .ci/run).

use std::path::PathBuf;

use proxy_header::{decode, v1, v2, DecodeOptions, Decoded, Version};

/// The assertions of fuzz/fuzz_targets/decode.rs, for one input.
fn check(data: &[u8]) {
    let opts = DecodeOptions::default();
    let Ok(Decoded::Complete { header, consumed }) = decode(data, &opts) else {
        return;
    };
    assert!(consumed <= data.len());
    for end in 0..consumed {
        assert!(
            matches!(decode(&data[..end], &opts), Ok(Decoded::Incomplete { .. })),
            "prefix of {end} bytes of an accepted header is not Incomplete"
        );
    }
    if let (Some(src), Some(dst)) = (header.source(), header.destination()) {
        let mut out = [0u8; 128];
        let n = match header.version {
            Version::V1 => v1::encode(src, dst, &mut out),
            Version::V2 => v2::encode_proxy(src, dst, &mut out),
        }
        .expect("encode");
        match decode(&out[..n], &opts) {
            Ok(Decoded::Complete { header: again, .. }) => {
                assert_eq!(again.source(), Some(src));
                assert_eq!(again.destination(), Some(dst));
            }
            other => panic!("re-encoded header rejected: {other:?}"),
        }
    }
}

#[test]
fn every_decode_corpus_file_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/decode exists") {
        let path = entry.expect("dir entry").path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).expect("read corpus file");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "corpus input {} fails", path.display());
        n += 1;
    }
    assert!(
        n >= 9,
        "expected the seed corpus in {}, found {n}",
        dir.display()
    );
}
