//! CRC32C (Castagnoli, RFC 4960) over a header with the CRC32C TLV value zeroed.
//! Only the checksum arithmetic: finding the TLV and comparing is the v2 parser's job.

/// CRC32C of `header` as if the 4 bytes at `value_at..value_at + 4` were zero.
/// `value_at + 4` must not exceed `header.len()`; out-of-range positions are clamped.
pub(crate) fn crc32c_zeroed(header: &[u8], value_at: usize) -> u32 {
    let start = value_at.min(header.len());
    let end = value_at.saturating_add(4).min(header.len());
    let crc = crc32c::crc32c(&header[..start]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4][..end - start]);
    crc32c::crc32c_append(crc, &header[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc3720_check_value() {
        // RFC 3720 B.4: 32 bytes of zeros have CRC32C 0x8a9136aa.
        assert_eq!(crc32c_zeroed(&[0u8; 32], 0), 0x8a91_36aa);
        let mut ones = [0xffu8; 32];
        ones[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(crc32c_zeroed(&[0xffu8; 32], 4), crc32c::crc32c(&ones));
    }
}
