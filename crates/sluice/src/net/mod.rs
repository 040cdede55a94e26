//! Sockets, and nothing above them: binding listeners (`bind`), the one accept loop with
//! its connection limit and back-off (`accept`), and connecting to a server over TCP or a
//! unix socket as one `Stream` type (`connect`). Imports nothing from the crate but the
//! server address type; protocols, frontends and pools are their own modules' business.

mod accept;
mod bind;
mod connect;

#[cfg(test)]
mod tests;

pub use accept::{accept_loop, drain, AcceptStats};
pub use bind::{bind_group, bind_listener, bind_single, bind_std, BACKLOG};
pub use connect::{connect, connect_send, is_connect_timeout, Stream};
