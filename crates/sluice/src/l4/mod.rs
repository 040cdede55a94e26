//! Layer 4, the TCP balancer. `forward` pumps bytes between an accepted client and a chosen
//! server (any `pumpable` stream); `splice` holds the splice(2) plumbing it uses (through
//! rustix's safe wrappers). TLS, HTTP and the PROXY codec live elsewhere.

pub mod bufpool;
pub mod forward;
pub mod frontend;
pub mod log;
pub mod pumpable;
pub mod splice;
