//! systemd `Type=notify` support without libsystemd: `READY=1`, `RELOADING=1` (with
//! `MONOTONIC_USEC`), `STOPPING=1` as one datagram each to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Without the variable
//! every call does nothing; a failed send is logged once and never stops the server.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set after the first failed send, so a broken socket is reported once.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Sends `state` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`. Ok(false) when
/// the variable is unset or empty.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET").filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    let target = target
        .into_string()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not UTF-8"))?;
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &target)?;
    }
    Ok(true)
}

fn send(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!("sd_notify: {}", state.replace('\n', " ")),
        Ok(false) => {}
        Err(e) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!("sd_notify to $NOTIFY_SOCKET failed: {e}");
            }
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants in `MONOTONIC_USEC`.
fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec.max(0) as u64 / 1000)
}

/// Every listener is bound and the server serves (also: a reload finished).
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload starts (`READY=1` follows when it is done, applied or refused).
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
        monotonic_usec()
    ));
}

/// After `sluice upgrade`: the process `pid` (our child) is the service's main process now.
/// Sent by the old main process, so `NotifyAccess=main` suffices.
pub fn main_pid(pid: u32) {
    send(&format!("MAINPID={pid}\nSTATUS=upgraded: pid {pid} serves"));
}

/// Shutdown starts.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=stopping");
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_is_positive_and_moves_forward() {
        let a = super::monotonic_usec();
        let b = super::monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
