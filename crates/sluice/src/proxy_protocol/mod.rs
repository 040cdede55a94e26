//! PROXY protocol on sluice's sockets: `expect` reads and validates a header from a trusted
//! peer at the start of an accepted connection, `send` builds the header sluice writes to a
//! server. The wire codec itself lives in the `proxy-header` crate; nothing here parses bytes.

pub mod expect;
pub mod send;

pub use expect::{expect_header, Accepted, Policy, Rejected};
pub use send::{build_header, SendOpts, HEADER_BUF};
