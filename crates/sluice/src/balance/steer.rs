//! What a server's agent (HAProxy's agent-check) and `slow_start` add to its state: the
//! agent's weight percentage, drain/maint word and up/down word, and the warm-up after a
//! server comes back; combined into the effective weight the snapshot is built from. No I/O
//! and no parsing here: `health::agent` reads and parses the agent's reply.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::server::ServerEntry;
use super::{Pool, ServerId};

/// Steps of the slow-start ramp: the weight grows by 1/`RAMP_STEPS` of the full weight at a
/// time, from 1/`RAMP_STEPS` (HAProxy updates it every max(1 s, slowstart / 20)).
pub(crate) const RAMP_STEPS: u64 = 20;
/// The agent's weight when it never sent one (percent).
const FULL_PCT: u32 = 100;

/// The administrative word of an agent reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAdmin {
    /// `ready`: cancels the agent's own drain or maint.
    Ready,
    /// `drain`: no new connections; open ones finish.
    Drain,
    /// `maint`: no new connections, active checks suspended.
    Maint,
}

/// The operational word of an agent reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOp {
    /// `up`: up again if the active checks agree.
    Up,
    /// `down`, `fail` or `stopped` (the word kept for logs).
    Down(&'static str),
}

/// One agent reply, parsed: only what it says changes (HAProxy: "parameters which are not
/// advertised by the agent are not changed"). The last word of each kind wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentReply {
    /// `NN%`: the weight as a percentage of the configured weight (0 = drain).
    pub weight_pct: Option<u32>,
    pub admin: Option<AgentAdmin>,
    pub op: Option<AgentOp>,
    /// `maxconn:N`: accepted and ignored (per-server limits are configuration only).
    pub maxconn: Option<u32>,
    /// The text after `#`, for logs.
    pub reason: Option<String>,
}

impl fmt::Display for AgentReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Vec::new();
        match self.op {
            Some(AgentOp::Up) => words.push("up".to_owned()),
            Some(AgentOp::Down(w)) => words.push(w.to_owned()),
            None => {}
        }
        match self.admin {
            Some(AgentAdmin::Ready) => words.push("ready".to_owned()),
            Some(AgentAdmin::Drain) => words.push("drain".to_owned()),
            Some(AgentAdmin::Maint) => words.push("maint".to_owned()),
            None => {}
        }
        if let Some(p) = self.weight_pct {
            words.push(format!("{p}%"));
        }
        if let Some(m) = self.maxconn {
            words.push(format!("maxconn:{m}"));
        }
        f.write_str(&words.join(" "))?;
        if let Some(r) = &self.reason {
            write!(f, " #{r}")?;
        }
        Ok(())
    }
}

/// A server's agent and slow-start state: atomics read when a snapshot is built, never on
/// the selection path.
#[derive(Debug)]
pub(crate) struct Steer {
    agent_pct: AtomicU32,
    /// `AgentAdmin` as 0 ready, 1 drain, 2 maint.
    agent_admin: AtomicU8,
    agent_down: AtomicBool,
    /// `slow_start` in milliseconds; 0 = off.
    slow_start_ms: AtomicU64,
    /// When the running warm-up began (None: at full weight).
    warm_from: Mutex<Option<Instant>>,
}

impl Default for Steer {
    fn default() -> Self {
        Steer {
            agent_pct: AtomicU32::new(FULL_PCT),
            agent_admin: AtomicU8::new(0),
            agent_down: AtomicBool::new(false),
            slow_start_ms: AtomicU64::new(0),
            warm_from: Mutex::new(None),
        }
    }
}

fn admin_u8(a: AgentAdmin) -> u8 {
    match a {
        AgentAdmin::Ready => 0,
        AgentAdmin::Drain => 1,
        AgentAdmin::Maint => 2,
    }
}

impl Steer {
    fn warm(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.warm_from
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn slow_start(&self) -> Duration {
        Duration::from_millis(self.slow_start_ms.load(Ordering::Relaxed))
    }

    /// The ramp step at `now` (1..=RAMP_STEPS) and when the next one starts (None: full).
    fn ramp(&self, now: Instant) -> (u64, Option<Instant>) {
        let period = self.slow_start();
        let mut warm = self.warm();
        let Some(from) = *warm else {
            return (RAMP_STEPS, None);
        };
        let elapsed = now.saturating_duration_since(from);
        if period.is_zero() || elapsed >= period {
            *warm = None;
            return (RAMP_STEPS, None);
        }
        let step = (elapsed.as_nanos() * u128::from(RAMP_STEPS) / period.as_nanos()) as u64;
        let step = step.clamp(1, RAMP_STEPS - 1);
        let next = from + period * (step as u32 + 1) / RAMP_STEPS as u32;
        (step, Some(next))
    }
}

impl ServerEntry {
    /// Sets `slow_start` (from the configuration; a reload may change it).
    pub(crate) fn set_slow_start(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.steer.slow_start_ms.store(ms, Ordering::Relaxed);
    }

    /// The server came back (checks or agent): with `slow_start`, its weight ramps up.
    pub(crate) fn start_warmup(&self) {
        if !self.steer.slow_start().is_zero() {
            *self.steer.warm() = Some(Instant::now());
        }
    }

    /// True while the agent said `down` (or `fail`, `stopped`) and not `up` since.
    pub(crate) fn agent_down(&self) -> bool {
        self.steer.agent_down.load(Ordering::Acquire)
    }

    /// True unless the agent said `drain` or `maint`.
    pub(crate) fn agent_ready(&self) -> bool {
        self.steer.agent_admin.load(Ordering::Acquire) == 0
    }

    /// True while the agent said `maint`: active checks are suspended.
    pub(crate) fn agent_maint(&self) -> bool {
        self.steer.agent_admin.load(Ordering::Acquire) == 2
    }

    /// The agent's last weight percentage (100 when it never sent one).
    pub(crate) fn agent_pct(&self) -> u32 {
        self.steer.agent_pct.load(Ordering::Relaxed)
    }

    /// The weight selection uses at `now`, in units of 1/(100 x RAMP_STEPS) of a configured
    /// weight unit: configured weight x agent % x slow-start step. Only the ratios between
    /// servers matter (the snapshot reduces them by their gcd), so a pool without agents or
    /// warm-ups balances exactly as by configured weights. Also returns when it next changes.
    pub(crate) fn effective_weight(&self, now: Instant) -> (u64, Option<Instant>) {
        let (step, next) = self.steer.ramp(now);
        (self.scaled_weight(step), next)
    }

    /// What status pages show at `now`, from one look at the ramp: the agent's percentage,
    /// the ramp in percent (100: not ramping) and [`Self::effective_weight`] in configured
    /// weight units.
    pub(crate) fn weight_view(&self, now: Instant) -> (u32, u32, f64) {
        let (step, _) = self.steer.ramp(now);
        let ramp_pct = u32::try_from(step * 100 / RAMP_STEPS).unwrap_or(100);
        let units = (100 * RAMP_STEPS) as f64;
        (
            self.agent_pct(),
            ramp_pct,
            self.scaled_weight(step) as f64 / units,
        )
    }

    /// Configured weight x agent % x ramp `step`, in 1/(100 x RAMP_STEPS) units.
    fn scaled_weight(&self, step: u64) -> u64 {
        u64::from(self.weight()) * u64::from(self.agent_pct()) * step
    }
}

impl Pool {
    /// Applies an agent reply for server `id` (named `name`, as `record_check_named`):
    /// returns true when the server's state or weight changed (the snapshot is rebuilt).
    pub(crate) fn apply_agent(&self, id: ServerId, name: &str, reply: &AgentReply) -> bool {
        let members = self.members();
        let found = match members.get(id.0) {
            Some(s) if s.name == name => Some(s),
            _ => members.iter().find(|s| s.name == name),
        };
        let Some(s) = found else { return false };
        let st = &s.steer;
        let mut changed = Vec::new();
        let mut reweighted = None;
        if let Some(p) = reply.weight_pct {
            let old = st.agent_pct.swap(p, Ordering::AcqRel);
            if old != p {
                reweighted = Some(format!("weight {old}% -> {p}%"));
            }
        }
        if let Some(a) = reply.admin {
            let old = st.agent_admin.swap(admin_u8(a), Ordering::AcqRel);
            if old != admin_u8(a) {
                changed.push(format!("{a:?}").to_lowercase());
            }
        }
        let was_down = s.agent_down();
        match reply.op {
            Some(AgentOp::Down(word)) if !was_down => {
                st.agent_down.store(true, Ordering::Release);
                let why = reply.reason.as_deref().unwrap_or("");
                changed.push(format!("{word} {why}").trim_end().to_owned());
            }
            Some(AgentOp::Up) if was_down => {
                st.agent_down.store(false, Ordering::Release);
                if s.is_up() {
                    s.start_warmup();
                }
                changed.push("up".to_owned());
            }
            _ => {}
        }
        if changed.is_empty() && reweighted.is_none() {
            return false;
        }
        if changed.is_empty() {
            // A busy edge's weight moves often: not worth a line each time.
            tracing::debug!(
                backend = %self.name, server = %s.name,
                "server {}/{} agent: {}", self.name, s.name, reweighted.unwrap_or_default()
            );
        } else {
            changed.extend(reweighted);
            tracing::info!(
                backend = %self.name, server = %s.name,
                "server {}/{} agent: {}", self.name, s.name, changed.join(", ")
            );
            s.mark_changed();
        }
        self.refresh_sharing(s);
        true
    }

    /// When server `id`'s slow-start weight next steps up (None: not warming up).
    pub(crate) fn warmup_next(&self, id: ServerId) -> Option<Instant> {
        let members = self.members();
        members.get(id.0)?.effective_weight(Instant::now()).1
    }

    /// Rebuilds the snapshot for the next slow-start step of server `id`.
    pub(crate) fn warmup_step(&self, id: ServerId) {
        let members = self.members();
        if let Some(s) = members.get(id.0) {
            self.refresh_sharing(s);
        }
    }
}

#[cfg(test)]
#[path = "steer_tests.rs"]
mod tests;
