//! Process conventions (issue #7): systemd readiness notifications (`notify`) and every
//! signal handler (`signals`: SIGTERM/SIGINT, SIGQUIT, SIGHUP, SIGUSR1). What a signal
//! triggers (drain, reload, log reopen) lives with its caller.

pub mod notify;
pub mod signals;
