//! PROXY protocol on sluice's sockets: `expect` reads and validates a header from a trusted
//! peer at the start of an accepted connection, `send` builds the header sluice writes to a
//! server, `conn_id` the connection id a UNIQUE_ID TLV carries. The wire codec itself lives
//! in the `proxy-header` crate.

pub(crate) mod conn_id;
pub(crate) mod expect;
pub(crate) mod send;

pub(crate) use conn_id::ConnId;
pub(crate) use expect::{expect_header, Policy};
pub(crate) use send::{build_header, header_len, Extra, SendOpts, HEADER_BUF};
