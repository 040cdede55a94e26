//! HAProxy's agent-check, the balancer's side: connect to the agent (the server's address or
//! `agent.addr`, on `agent.port`), send `agent.send`, read one ASCII line (at most
//! [`MAX_REPLY`] bytes, within `agent.timeout`) and parse it strictly into a
//! `balance::AgentReply`. Applying it is the pool's; scheduling is `health`'s.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::balance::{AgentAdmin, AgentOp, AgentReply, ServerAddr};
use crate::net;
use crate::spec;

/// Longest reply line read from an agent (HAProxy reads one buffer); longer is an error.
pub(crate) const MAX_REPLY: usize = 1024;
/// Largest weight percentage accepted (HAProxy caps the resulting weight at 256).
pub(crate) const MAX_PCT: u32 = 25_600;

/// Where and how to ask one server's agent.
#[derive(Debug, Clone)]
pub(crate) struct AgentTarget {
    pub addr: ServerAddr,
    pub source: Option<std::net::IpAddr>,
    pub timeout: Duration,
    pub send: Vec<u8>,
}

impl AgentTarget {
    /// The agent of a server at `server`: `agent.addr` or the server's host, on
    /// `agent.port`. None for a unix-socket server without `agent.addr` (refused at load).
    pub(crate) fn new(
        server: &ServerAddr,
        agent: &spec::Agent,
        source: Option<std::net::IpAddr>,
    ) -> Option<AgentTarget> {
        let addr = match (agent.addr, server) {
            (Some(ip), _) => ServerAddr::Inet(SocketAddr::new(ip, agent.port)),
            (None, ServerAddr::Inet(sa)) => ServerAddr::Inet(SocketAddr::new(sa.ip(), agent.port)),
            (None, ServerAddr::Host { host, .. }) => ServerAddr::Host {
                host: host.clone(),
                port: agent.port,
            },
            // A unix socket has no host; SRV servers are expanded before checks start.
            (None, ServerAddr::Unix(_) | ServerAddr::Srv { .. }) => return None,
        };
        Some(AgentTarget {
            addr,
            source,
            timeout: agent.timeout,
            send: agent.send.as_bytes().to_vec(),
        })
    }
}

/// Asks the agent once: its reply, or why there is none (a connect failure is not a failed
/// check: HAProxy leaves the server as it is).
pub(crate) async fn ask(t: &AgentTarget) -> Result<AgentReply, String> {
    match tokio::time::timeout(t.timeout, exchange(t)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no reply within {:?}", t.timeout)),
    }
}

async fn exchange(t: &AgentTarget) -> Result<AgentReply, String> {
    let mut io = net::connect(&t.addr, t.source, t.timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if !t.send.is_empty() {
        io.write_all(&t.send)
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let mut buf = vec![0u8; MAX_REPLY];
    let mut have = 0;
    loop {
        if let Some(line) = line_in(&buf[..have]) {
            return parse_line(line);
        }
        if have == buf.len() {
            return Err(format!("no end of line within {MAX_REPLY} bytes"));
        }
        let n = io
            .read(&mut buf[have..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            // The agent closed: what it sent is the line (HAProxy accepts it unterminated).
            return parse_line(&buf[..have]);
        }
        have += n;
    }
}

/// The reply line: the bytes before the first `\r` or `\n`, once one arrived.
pub(crate) fn line_in(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.iter().position(|&b| b == b'\r' || b == b'\n')?;
    Some(&buf[..end])
}

/// Parses one reply line (without its line end): words separated by spaces, tabs or commas,
/// in any order, case-insensitive: `NN%`, `maxconn:N`, `ready`, `drain`, `maint`, `up`,
/// `down`/`fail`/`stopped`; text after `#` is the reason. The last word of each kind wins.
/// Anything else (an unknown word, a control or non-ASCII byte, an empty line) is an
/// error and nothing of the line applies.
pub(crate) fn parse_line(line: &[u8]) -> Result<AgentReply, String> {
    if line.len() > MAX_REPLY {
        return Err(format!("reply longer than {MAX_REPLY} bytes"));
    }
    if let Some(&b) = line
        .iter()
        .find(|&&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Err(format!("byte 0x{b:02x} in the reply"));
    }
    // Printable ASCII only from here on: the text is valid UTF-8.
    let text = std::str::from_utf8(line).map_err(|_| "not ASCII".to_owned())?;
    let (words, reason) = match text.split_once('#') {
        Some((w, r)) => (w, Some(r.trim().to_owned())),
        None => (text, None),
    };
    let mut reply = AgentReply {
        reason: reason.filter(|r| !r.is_empty()),
        ..AgentReply::default()
    };
    let mut any = false;
    for w in words.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
        any = true;
        let lower = w.to_ascii_lowercase();
        match lower.as_str() {
            "up" => reply.op = Some(AgentOp::Up),
            "down" => reply.op = Some(AgentOp::Down("down")),
            "fail" => reply.op = Some(AgentOp::Down("fail")),
            "stopped" => reply.op = Some(AgentOp::Down("stopped")),
            "ready" => reply.admin = Some(AgentAdmin::Ready),
            "drain" => reply.admin = Some(AgentAdmin::Drain),
            "maint" => reply.admin = Some(AgentAdmin::Maint),
            _ => {
                if let Some(n) = lower.strip_prefix("maxconn:") {
                    reply.maxconn = Some(number(n, u32::MAX).ok_or_else(|| bad(w))?);
                } else if let Some(n) = lower.strip_suffix('%') {
                    reply.weight_pct = Some(number(n, MAX_PCT).ok_or_else(|| bad(w))?);
                } else {
                    return Err(bad(w));
                }
            }
        }
    }
    if !any {
        return Err("empty reply".into());
    }
    Ok(reply)
}

fn bad(word: &str) -> String {
    format!("unknown word {word:?} in the reply")
}

/// Decimal digits only (no sign, no space), at most `max`.
fn number(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|&n| n <= u64::from(max))
        .map(|n| n as u32)
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
