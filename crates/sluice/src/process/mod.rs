//! Process conventions (issue #7): systemd readiness notifications (`notify`), every
//! signal handler (`signals`: SIGTERM/SIGINT, SIGQUIT, SIGHUP, SIGUSR1) and passing open
//! descriptors to another process (`fdpass`, for `sluice upgrade`). What a signal triggers
//! (drain, reload, log reopen) and what a descriptor is live with their callers.

pub mod fdpass;
pub mod notify;
pub mod signals;
