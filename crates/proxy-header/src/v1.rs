//! PROXY v1 text line: exact-grammar parser and encoder.
