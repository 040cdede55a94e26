//! Layer 4, the TCP balancer. `forward` pumps bytes between an accepted client and a chosen
//! server (any `pumpable` stream); `splice` holds the splice(2) plumbing it uses (through
//! rustix's safe wrappers). TLS, HTTP and the PROXY codec live elsewhere.

mod bufpool;
pub(crate) mod client_hello;
pub mod forward;
pub(crate) mod frontend;
pub(crate) mod log;
mod pumpable;
pub(crate) mod route;
pub mod sockmap;
mod splice;
