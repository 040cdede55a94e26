//! Fuzz target: the decoder must never panic, never claim more bytes than it was given, and
//! give the same verdict for every prefix-then-whole replay of a header it accepts.
//! Also re-encodes accepted TCP headers and checks they decode to the same addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_header::{decode, v1, v2, DecodeOptions, Decoded, Version};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::default();
    let Ok(Decoded::Complete { header, consumed }) = decode(data, &opts) else {
        return;
    };
    assert!(consumed <= data.len());
    // Every strict prefix of an accepted header is incomplete, never invalid.
    for end in 0..consumed {
        assert!(matches!(decode(&data[..end], &opts), Ok(Decoded::Incomplete { .. })));
    }
    for tlv in header.tlvs.iter() {
        let _ = tlv;
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
});
