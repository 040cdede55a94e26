//! Sockets, and nothing above them: binding listeners (`bind`), the one accept loop with its
//! limit and back-off (`accept`), connecting to a server as one `Stream` (`connect`), a send
//! timeout (`deadline`), the worker thread index (`worker`). Imports only the server address
//! type; protocols, frontends and pools are their own modules' business.

mod accept;
mod bind;
mod connect;
mod deadline;
pub(crate) mod worker;

#[cfg(test)]
mod tests;

pub(crate) use accept::drain;
pub use accept::{accept_loop, AcceptStats};
pub(crate) use bind::{adopt, bind_group, bind_single, overlaps, probe_unheld};
pub(crate) use connect::{connect, connect_send, is_connect_timeout, Stream};
pub(crate) use deadline::SendDeadline;
