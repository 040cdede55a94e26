//! The properties the `decode` fuzz target checks, as one function shared by the cargo-fuzz
//! target (fuzz/fuzz_targets/decode.rs) and the corpus replay in this crate's tests, so the
//! two can never drift apart. Not part of the supported API (hidden from the docs).

use crate::{decode as decode_header, v1, v2, DecodeOptions, Decoded, Version};

/// Panics if the decoder breaks a property on `data`: it claims more bytes than it was
/// given, a strict prefix of an accepted header is anything but incomplete, iterating the
/// accepted TLVs fails, or an accepted TCP header re-encodes to different addresses.
pub fn decode(data: &[u8]) {
    let opts = DecodeOptions::default();
    let Ok(Decoded::Complete { header, consumed }) = decode_header(data, &opts) else {
        return;
    };
    assert!(consumed <= data.len());
    for end in 0..consumed {
        assert!(matches!(
            decode_header(&data[..end], &opts),
            Ok(Decoded::Incomplete { .. })
        ));
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
        .expect("an accepted header's addresses encode");
        match decode_header(&out[..n], &opts) {
            Ok(Decoded::Complete { header: again, .. }) => {
                assert_eq!(again.source(), Some(src));
                assert_eq!(again.destination(), Some(dst));
            }
            other => panic!("re-encoded header rejected: {other:?}"),
        }
    }
}
