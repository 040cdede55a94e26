//! sluice: one binary for both tiers of TLS scale-out. The L4 balancer (accept, pick a
//! healthy server, forward bytes, send PROXY) and the TLS edge (accept trusted PROXY,
//! terminate TLS, hand requests to uwsgi/HTTP apps). The command line and `sluice demo` live
//! in the binary (`src/bin/sluice/`), which only calls into this library.
#![forbid(unsafe_code)]

pub mod addr;
pub mod admin;
pub mod balance;
pub mod config;
pub mod discovery;
pub mod edge;
#[doc(hidden)]
pub mod fuzz_check;
pub mod health;
pub mod l4;
pub mod log;
pub mod metrics;
pub mod net;
pub mod process;
pub mod proxy_protocol;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod spec;
pub mod tls;
pub mod upstream;

pub use runtime::Server;
