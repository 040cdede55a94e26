//! sluice: one binary for both tiers of TLS scale-out. The L4 balancer (accept, pick a
//! healthy server, forward bytes, send PROXY) and the TLS edge (accept trusted PROXY,
//! terminate TLS, hand requests to uwsgi/HTTP apps). The command line and `sluice demo` live
//! in the binary (`src/bin/sluice/`), which only calls into this library.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

// The public surface is what the binary, the integration tests, the benches and the fuzz
// targets use; everything else is `pub(crate)`, so `unreachable_pub` and dead-code warnings
// show what nothing calls.

pub mod addr;
mod admin;
pub mod balance;
pub mod config;
mod discovery;
pub mod edge;
#[doc(hidden)]
pub mod fuzz_check;
mod health;
pub mod l4;
mod log;
pub mod metrics;
pub mod net;
pub mod process;
mod proxy_protocol;
pub mod reload;
pub mod runtime;
mod server;
pub mod spec;
pub mod tls;
pub mod upstream;

pub use log::{set_json_records, FlatJson};
pub use runtime::Server;
pub use server::Accept;
