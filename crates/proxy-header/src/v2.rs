//! PROXY v2 binary header: parser and allocation-free encoder.
