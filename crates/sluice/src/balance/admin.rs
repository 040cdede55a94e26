//! Operator control of servers (admin API, issue #7): drain / maint / ready and a runtime
//! weight, applied by rebuilding the selection snapshot. Runtime-only: nothing here writes the
//! configuration, so a reload restores configured values. The HTTP side lives in `admin`.

use std::fmt;
use std::sync::atomic::Ordering;

use super::server::ServerEntry;
use super::{Pool, ServerId};

/// Largest weight the admin API accepts (as HAProxy's `set weight`).
pub(super) const MAX_ADMIN_WEIGHT: u32 = 256;

/// What the operator asked of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminMode {
    /// Normal: selection and health checks as configured.
    Ready,
    /// No new connections; existing leases finish. Health checks go on.
    Drain,
    /// Like drain, and health checks stop (they can neither mark it up nor down).
    Maint,
}

impl AdminMode {
    /// "ready", "drain", "maint" (the JSON and metrics spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            AdminMode::Ready => "ready",
            AdminMode::Drain => "drain",
            AdminMode::Maint => "maint",
        }
    }

    /// Parses the JSON spelling.
    pub fn parse(s: &str) -> Option<AdminMode> {
        match s {
            "ready" => Some(AdminMode::Ready),
            "drain" => Some(AdminMode::Drain),
            "maint" => Some(AdminMode::Maint),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> AdminMode {
        match v {
            1 => AdminMode::Drain,
            2 => AdminMode::Maint,
            _ => AdminMode::Ready,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            AdminMode::Ready => 0,
            AdminMode::Drain => 1,
            AdminMode::Maint => 2,
        }
    }
}

impl fmt::Display for AdminMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an admin change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefused {
    #[error("backend {backend:?} has no server {server:?}")]
    NoServer { backend: String, server: String },
    #[error("weight {0} is out of range 0..={MAX_ADMIN_WEIGHT}")]
    Weight(u32),
}

impl ServerEntry {
    pub(crate) fn admin_mode(&self) -> AdminMode {
        AdminMode::from_u8(self.admin.load(Ordering::Acquire))
    }

    /// False while drained or in maintenance: selection skips the server.
    pub(crate) fn takes_new(&self) -> bool {
        self.admin_mode() == AdminMode::Ready
    }
}

impl Pool {
    /// Sets server `server`'s operator state and/or weight (None = unchanged). Drain and
    /// maint take effect for the next selection; open leases are untouched and finish.
    pub fn set_admin(
        &self,
        server: &str,
        mode: Option<AdminMode>,
        weight: Option<u32>,
    ) -> Result<ServerId, ChangeRefused> {
        let members = self.members();
        let Some(i) = members.iter().position(|s| s.name == server) else {
            return Err(ChangeRefused::NoServer {
                backend: self.name.clone(),
                server: server.to_string(),
            });
        };
        if let Some(w) = weight.filter(|&w| w > MAX_ADMIN_WEIGHT) {
            return Err(ChangeRefused::Weight(w));
        }
        let s = &members[i];
        if let Some(w) = weight {
            s.weight.store(w, Ordering::Relaxed);
        }
        if let Some(m) = mode {
            let old = AdminMode::from_u8(s.admin.swap(m.to_u8(), Ordering::AcqRel));
            if old != m {
                s.mark_changed();
                tracing::warn!(
                    backend = %self.name, server = %s.name,
                    "server {}/{} set to {} by the admin API (was {})", self.name, s.name, m, old
                );
            }
        }
        // Every pool sharing this server re-evaluates (waiters too: a server back to ready,
        // or heavier, may have room).
        self.refresh_sharing(s);
        Ok(ServerId(i))
    }

    /// True when server `id` is in maintenance (admin API or its agent): its health checks
    /// are suspended.
    pub(crate) fn in_maint(&self, id: ServerId) -> bool {
        self.members()
            .get(id.0)
            .is_some_and(|s| s.admin_mode() == AdminMode::Maint || s.agent_maint())
    }

    /// Connections waiting in this backend's queue for a free slot right now.
    pub fn queue_len(&self) -> usize {
        self.queue.waiting.load(Ordering::Relaxed)
    }
}

impl ServerEntry {
    /// Back to ready; returns the mode it was in when that was not ready already.
    pub(crate) fn reset_admin(&self) -> Option<AdminMode> {
        let old = AdminMode::from_u8(self.admin.swap(AdminMode::Ready.to_u8(), Ordering::AcqRel));
        (old != AdminMode::Ready).then_some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{ClientAddr, PeerAddr};

    fn pool(n: usize) -> std::sync::Arc<Pool> {
        let toml = format!(
            "name = \"be\"\nservers = [{}]",
            (0..n)
                .map(|i| format!("{{ name = \"s{i}\", addr = \"127.0.0.1:{}\" }}", 1000 + i))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Pool::new(&super::super::tests::backend_spec(&toml))
    }

    fn client() -> ClientAddr {
        ClientAddr::direct(PeerAddr("127.0.0.2:5000".parse().unwrap()))
    }

    #[test]
    fn drain_skips_new_but_keeps_leases_and_ready_restores() {
        let p = pool(2);
        let held = p.select(&client(), &[]).expect("lease");
        let held_name = held.name().to_string();
        p.set_admin(&held_name, Some(AdminMode::Drain), None)
            .unwrap();
        for _ in 0..10 {
            let l = p.select(&client(), &[]).expect("other server");
            assert_ne!(l.name(), held_name, "a drained server got a new connection");
        }
        let snap = p.servers();
        let me = snap.iter().find(|s| s.name == held_name).unwrap();
        assert_eq!(me.admin, AdminMode::Drain);
        assert_eq!(me.active, 1, "the existing lease survives the drain");
        drop(held);
        p.set_admin(&held_name, Some(AdminMode::Ready), None)
            .unwrap();
        let names: Vec<String> = (0..4)
            .map(|_| p.select(&client(), &[]).unwrap().name().to_string())
            .collect();
        assert!(
            names.contains(&held_name),
            "ready server back in rotation: {names:?}"
        );
    }

    #[test]
    fn all_drained_means_no_server_and_weight_applies() {
        let p = pool(2);
        p.set_admin("s0", Some(AdminMode::Maint), None).unwrap();
        p.set_admin("s1", Some(AdminMode::Drain), None).unwrap();
        assert!(p.select(&client(), &[]).is_none());
        assert!(!p.any_up());
        p.set_admin("s1", Some(AdminMode::Ready), Some(7)).unwrap();
        assert_eq!(p.servers()[1].weight, 7);
        assert!(p.in_maint(ServerId(0)));
        assert_eq!(
            p.set_admin("nope", None, None),
            Err(ChangeRefused::NoServer {
                backend: "be".into(),
                server: "nope".into()
            })
        );
        assert_eq!(
            p.set_admin("s1", None, Some(999)),
            Err(ChangeRefused::Weight(999))
        );
    }
}
