//! Pool successors on reload: shared live entries for kept servers, the configured weight and
//! ready state restored, failures seen through either pool shared.

use super::*;
use crate::addr::ClientAddr;
use crate::balance::{AdminMode, ServerId, ServerState};

/// A `[backend]` table as the spec a loaded configuration would give.
fn backend(toml: &str) -> spec::Backend {
    #[derive(serde::Deserialize)]
    struct W {
        backend: crate::config::Backend,
    }
    let b = toml::from_str::<W>(toml).expect("backend toml").backend;
    b.spec().expect("backend spec")
}

const V1: &str = r#"[backend]
name = "b"
health = { rise = 1, fall = 1 }
servers = [{ name = "a", addr = "127.0.0.10:80" }, { name = "b", addr = "127.0.0.11:80" },
       { name = "c", addr = "127.0.0.12:80" }]"#;

#[test]
fn kept_servers_share_state_changed_weight_applies_removed_drain() {
    let cfg1 = backend(V1);
    let pool = Pool::new(&cfg1);
    let client = ClientAddr::direct(crate::addr::PeerAddr("127.0.0.2:1000".parse().unwrap()));
    // A connection on "a", a failed check taking "c" down, some traffic counted.
    let held = pool.select(&client, &[ServerId(1), ServerId(2)]).unwrap();
    assert_eq!(held.name(), "a");
    pool.record_check(ServerId(2), Err("refused".into()));
    assert_eq!(pool.servers()[2].state, ServerState::Down);

    // "a" re-weighted, "b" gone, "c" unchanged, "d" new; "c" moved to the end.
    let cfg2 = backend(
        r#"[backend]
name = "b"
health = { rise = 1, fall = 1 }
servers = [{ name = "a", addr = "127.0.0.10:80", weight = 5 },
       { name = "d", addr = "127.0.0.11:81" }, { name = "c", addr = "127.0.0.12:80" }]"#,
    );
    let (next, diff) = pool.reconfigure(&cfg1, &cfg2);
    assert_eq!(diff.kept, vec!["c"]);
    assert_eq!(diff.reweighted, vec!["a"]);
    assert_eq!(diff.added, vec!["d"]);
    assert_eq!(diff.removed, vec!["b"]);
    let snap = next.servers();
    let names: Vec<&str> = snap.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "d", "c"]);
    assert_eq!(snap[0].active, 1, "the open connection still counts on a");
    assert_eq!(snap[0].total, 1);
    assert_eq!(snap[0].weight, 5);
    assert_eq!(snap[2].state, ServerState::Down, "c keeps its health state");
    assert_eq!(snap[2].checks_failed, 1);
    assert_eq!(snap[1].total, 0);
    // The down server is not selected by the new pool; "d" and "a" are.
    for _ in 0..12 {
        let l = next.select(&client, &[]).unwrap();
        assert_ne!(l.name(), "c");
    }
    // The old lease finishes on the old pool and frees the shared slot.
    drop(held);
    assert_eq!(next.servers()[0].active, 0);
}

#[test]
fn admin_changes_give_way_to_the_config_and_address_change_is_new() {
    let cfg1 = backend(V1);
    let pool = Pool::new(&cfg1);
    // Runtime-only admin changes: a weight and a drain. A reload restores the config.
    pool.set_admin("a", Some(AdminMode::Drain), Some(7))
        .unwrap();
    assert_eq!(pool.servers()[0].weight, 7);
    let moved = V1.replace("127.0.0.11:80", "127.0.0.11:90");
    let cfg2 = backend(&moved);
    let (next, diff) = pool.reconfigure(&cfg1, &cfg2);
    assert_eq!(next.servers()[0].weight, 1);
    assert_eq!(next.servers()[0].admin, AdminMode::Ready);
    assert_eq!(diff.kept, vec!["a", "c"]);
    assert_eq!(diff.added, vec!["b"]);
    assert_eq!(diff.removed, vec!["b"]);
    assert!(!diff.is_unchanged());
    let (_, same) = next.reconfigure(&cfg2, &cfg2);
    assert!(same.is_unchanged());
}

#[test]
fn a_failure_seen_through_the_old_pool_takes_the_server_out_of_the_new_one() {
    let cfg1 = backend(V1);
    let pool = Pool::new(&cfg1);
    let (next, _) = pool.reconfigure(&cfg1, &cfg1);
    let client = ClientAddr::direct(crate::addr::PeerAddr("127.0.0.2:1000".parse().unwrap()));
    // A connection still on the old pool fails to reach "b" (fall = 1).
    let lease = pool.select(&client, &[ServerId(0), ServerId(2)]).unwrap();
    assert_eq!(lease.name(), "b");
    lease.connect_failed("connection refused");
    drop(lease);
    for _ in 0..12 {
        assert_ne!(next.select(&client, &[]).unwrap().name(), "b");
    }
    // And back: a check through the new pool brings it back in the old one too.
    next.record_check(ServerId(1), Ok(std::time::Duration::from_millis(1)));
    assert!((0..12).any(|_| pool.select(&client, &[]).unwrap().name() == "b"));
}

#[test]
fn update_in_place_keeps_state_starts_new_servers_down_and_drains_removed() {
    let cfg1 = backend(V1);
    let pool = Pool::new(&cfg1);
    let client = ClientAddr::direct(crate::addr::PeerAddr("127.0.0.2:1000".parse().unwrap()));
    let held = pool.select(&client, &[ServerId(0), ServerId(2)]).unwrap();
    assert_eq!(held.name(), "b");
    pool.set_admin("a", Some(AdminMode::Drain), Some(7))
        .unwrap();
    // "b" vanishes, "d" appears (from DNS: starts down), "a" and "c" stay.
    let cfg2 = backend(&V1.replace(
        r#"{ name = "b", addr = "127.0.0.11:80" }"#,
        r#"{ name = "d", addr = "127.0.0.13:80" }"#,
    ));
    let start_down: HashSet<String> = ["d".to_string()].into();
    let diff = pool.update(&cfg1, &cfg2, &start_down);
    assert_eq!(diff.kept, vec!["a", "c"]);
    assert_eq!(diff.added, vec!["d"]);
    assert_eq!(diff.removed, vec!["b"]);
    let snap = pool.servers();
    let names: Vec<&str> = snap.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "d", "c"], "the same pool serves the new set");
    assert_eq!(
        snap[1].state,
        ServerState::Down,
        "new from DNS: down until checked"
    );
    assert_eq!(
        snap[0].admin,
        AdminMode::Drain,
        "no reload: admin state stays"
    );
    assert_eq!(snap[0].weight, 7);
    // Only "c" is selectable: "a" drained, "d" down, "b" gone.
    for _ in 0..6 {
        assert_eq!(pool.select(&client, &[]).unwrap().name(), "c");
    }
    // The lease on the removed server still works and frees its slot.
    assert_eq!(held.name(), "b");
    drop(held);
    // A passing check (by name) brings "d" in.
    pool.record_check_named(ServerId(1), "d", Ok(std::time::Duration::from_millis(1)));
    assert!((0..12).any(|_| pool.select(&client, &[]).unwrap().name() == "d"));
    // A check result for a server no longer in the pool goes nowhere.
    pool.record_check_named(ServerId(1), "b", Err("refused".into()));
    assert_eq!(pool.servers()[1].state, ServerState::Up);
}
