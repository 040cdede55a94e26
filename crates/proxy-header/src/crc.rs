//! CRC32C (Castagnoli, RFC 4960) over a header with the CRC32C TLV value zeroed.
