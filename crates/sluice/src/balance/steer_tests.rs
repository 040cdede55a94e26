//! Agent replies and slow start on a pool (no I/O): drain keeps leases and takes no new
//! ones, a weight percentage shifts the roundrobin share, down/up, maint; the slow-start
//! ramp (1/20 at once, linear, full at the end, not at start) under paused tokio time.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::addr::{ClientAddr, PeerAddr};
use crate::balance::{AdminMode, ServerState};

fn pool(servers: &str) -> std::sync::Arc<Pool> {
    let toml = format!("name = \"be\"\nservers = [{servers}]\n[health]\nrise = 1\nfall = 1");
    Pool::new(&super::super::tests::backend_spec(&toml))
}

fn two(extra: &str) -> std::sync::Arc<Pool> {
    pool(&format!(
        "{{ name = \"a\", addr = \"127.0.0.1:1000\" {extra} }}, \
         {{ name = \"b\", addr = \"127.0.0.1:1001\" {extra} }}"
    ))
}

fn client() -> ClientAddr {
    ClientAddr::direct(PeerAddr("127.0.0.2:5000".parse().unwrap()))
}

/// How many of `n` selections each server got (leases dropped at once).
fn shares(p: &Pool, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        if let Some(l) = p.select(&client(), &[]) {
            *out.entry(l.name().to_owned()).or_default() += 1;
        }
    }
    out
}

fn reply(s: &str) -> AgentReply {
    crate::health::agent::parse_line(s.as_bytes()).unwrap()
}

#[test]
fn drain_then_weight_then_down_then_up() {
    let p = two("");
    let held = p.select(&client(), &[]).unwrap();
    let held_name = held.name().to_owned();
    let id = held.id();
    assert!(p.apply_agent(id, &held_name, &reply("drain")));
    let s = shares(&p, 10);
    assert_eq!(s.get(&held_name), None, "drained server picked: {s:?}");
    assert_eq!(p.servers()[id.0].active, 1, "the open lease stays");
    drop(held);

    // ready 50%: a gets half b's share (or the other way round).
    assert!(p.apply_agent(id, &held_name, &reply("ready 50%")));
    let s = shares(&p, 300);
    assert_eq!(s[&held_name], 100, "{s:?}");
    // 0% is a drain (HAProxy shows DRAIN).
    p.apply_agent(id, &held_name, &reply("0%"));
    assert_eq!(shares(&p, 10).get(&held_name), None);
    p.apply_agent(id, &held_name, &reply("100%"));

    assert!(p.apply_agent(id, &held_name, &reply("down #disk full")));
    assert_eq!(p.servers()[id.0].state, ServerState::Down);
    assert_eq!(shares(&p, 10).get(&held_name), None);
    // Nothing new: no change, no rebuild.
    assert!(!p.apply_agent(id, &held_name, &reply("down")));
    assert!(p.apply_agent(id, &held_name, &reply("up")));
    assert_eq!(p.servers()[id.0].state, ServerState::Up);
    assert_eq!(shares(&p, 10)[&held_name], 5);
}

#[test]
fn agent_up_does_not_overrule_failed_checks_and_maint_stops_checks() {
    let p = two("");
    p.record_check(ServerId(0), Err("refused".into()));
    p.apply_agent(ServerId(0), "a", &reply("up"));
    assert_eq!(p.servers()[0].state, ServerState::Down);
    p.apply_agent(ServerId(1), "b", &reply("maint"));
    assert!(p.in_maint(ServerId(1)));
    assert!(p.select(&client(), &[]).is_none());
    p.apply_agent(ServerId(1), "b", &reply("ready"));
    assert!(!p.in_maint(ServerId(1)));
    assert!(p.select(&client(), &[]).is_some());
}

#[test]
fn agent_and_operator_drains_are_kept_apart() {
    let p = two("");
    p.set_admin("a", Some(AdminMode::Drain), None).unwrap();
    // The agent's `ready` cancels only the agent's own drain.
    p.apply_agent(ServerId(0), "a", &reply("up ready 100%"));
    assert_eq!(shares(&p, 6).get("a"), None);
}

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_from_a_twentieth_to_full() {
    let p = two(", slow_start = \"20s\"");
    // Not at start: both at full weight.
    assert_eq!(p.warmup_next(ServerId(0)), None);
    assert_eq!(shares(&p, 40)["a"], 20);

    p.record_check(ServerId(0), Err("refused".into()));
    assert_eq!(shares(&p, 4).get("a"), None);
    p.record_check(ServerId(0), Ok(Duration::from_millis(1)));
    // Step 1 of 20 at once: a gets 1 of every 21.
    assert_eq!(shares(&p, 210)["a"], 10);
    let next = p.warmup_next(ServerId(0)).expect("warming up");
    assert_eq!(next - tokio::time::Instant::now(), Duration::from_secs(2));

    // Halfway: 10/20 of b's weight.
    tokio::time::advance(Duration::from_secs(10)).await;
    p.warmup_step(ServerId(0));
    assert_eq!(shares(&p, 300)["a"], 100);

    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(p.warmup_next(ServerId(0)), None, "the ramp is over");
    p.warmup_step(ServerId(0));
    assert_eq!(shares(&p, 40)["a"], 20);
}

#[tokio::test(start_paused = true)]
async fn slow_start_after_the_agent_brings_a_server_back() {
    let p = two(", slow_start = \"10s\"");
    p.apply_agent(ServerId(1), "b", &reply("stopped"));
    p.apply_agent(ServerId(1), "b", &reply("up"));
    assert_eq!(shares(&p, 210)["b"], 10);
}

#[test]
fn leastconn_compares_load_per_agent_weight() {
    let toml = "name = \"be\"\nbalance = \"leastconn\"\nservers = [\
        { name = \"a\", addr = \"127.0.0.1:1000\" }, { name = \"b\", addr = \"127.0.0.1:1001\" }]";
    let p = Pool::new(&super::super::tests::backend_spec(toml));
    p.apply_agent(ServerId(0), "a", &reply("50%"));
    let held: Vec<_> = (0..3).map(|_| p.select(&client(), &[]).unwrap()).collect();
    let on_a = held.iter().filter(|l| l.name() == "a").count();
    assert_eq!(on_a, 1, "a at 50% carries half of b's load");
}
