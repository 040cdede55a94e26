//! `balance = "hash"` (Maglev) across balancers (issue #17): two sluice balancers with the
//! same config send 1 000 keys (the SNI of a TLS ClientHello, `hash_key = "sni"`) to the same
//! servers; a balancer without one of the 4 servers remaps only about a quarter of them; weights
//! 1:2 split the keys 1:2. Servers are loopback `NamedServer`s answering their name, so the
//! ClientHello is sent raw and never answered.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::support::*;

const KEYS: usize = 1000;
/// Connections in flight at once.
const PARALLEL: usize = 32;

/// A ClientHello as rustls writes it with `cfg`, for `sni`.
fn client_hello(cfg: &Arc<rustls::ClientConfig>, sni: &str) -> Vec<u8> {
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// A balancer over `servers` (name, address, weight), hashing the SNI.
fn balancer(name: &str, servers: &[(&str, SocketAddr, u32)]) -> String {
    let list: String = servers
        .iter()
        .map(|(n, a, w)| {
            format!("[[backend.servers]]\nname = \"{n}\"\naddr = \"{a}\"\nweight = {w}\n")
        })
        .collect();
    format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n\
         [[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"{name}_be\"\n\n\
         [[backend]]\nname = \"{name}_be\"\nbalance = \"hash\"\nhash_key = \"sni\"\n{list}"
    )
}

/// The server each key's connection reached through `to`.
async fn map_keys(to: SocketAddr, hellos: &Arc<Vec<Vec<u8>>>) -> Vec<String> {
    let mut out = vec![String::new(); hellos.len()];
    let mut set = JoinSet::new();
    let mut next = 0;
    loop {
        while set.len() < PARALLEL && next < hellos.len() {
            let (i, hellos) = (next, hellos.clone());
            set.spawn(async move {
                let mut c = within("connect", tokio::net::TcpStream::connect(to))
                    .await
                    .unwrap();
                c.write_all(&hellos[i]).await.unwrap();
                let mut name = Vec::new();
                let mut byte = [0u8; 1];
                while within("server name", c.read(&mut byte)).await.unwrap() == 1 {
                    if byte[0] == b'\n' {
                        break;
                    }
                    name.push(byte[0]);
                }
                (i, String::from_utf8(name).unwrap())
            });
            next += 1;
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let (i, name) = done.unwrap();
        out[i] = name;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancers_agree_remove_a_quarter_and_respect_weights() {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut named = Vec::new();
    for n in ["srv_a", "srv_b", "srv_c", "srv_d"] {
        named.push((n, NamedServer::start(lo, n).await));
    }
    let all: Vec<(&str, SocketAddr, u32)> = named.iter().map(|(n, s)| (*n, s.addr, 1)).collect();
    // The second balancer lists the same servers in another order: Maglev orders by name.
    let mut reversed = all.clone();
    reversed.reverse();
    let one = Sluice::start(&balancer("hash_one", &all)).await;
    let two = Sluice::start(&balancer("hash_two", &reversed)).await;
    let three = Sluice::start(&balancer("hash_three", &all[..3])).await;
    let weighted = Sluice::start(&balancer(
        "hash_weighted",
        &[("srv_a", all[0].1, 1), ("srv_b", all[1].1, 2)],
    ))
    .await;
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    );
    let hellos: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..KEYS)
            .map(|i| client_hello(&cfg, &format!("k{i}.example")))
            .collect(),
    );

    let a = map_keys(one.addr("hash_one"), &hellos).await;
    let b = map_keys(two.addr("hash_two"), &hellos).await;
    assert_eq!(a, b, "two balancers disagree");
    let mut share: HashMap<&str, usize> = HashMap::new();
    for s in &a {
        *share.entry(s.as_str()).or_default() += 1;
    }
    for (n, _) in &named {
        let c = share.get(n).copied().unwrap_or(0);
        assert!((180..=320).contains(&c), "{n} got {c} of {KEYS}: {share:?}");
    }

    let without_d = map_keys(three.addr("hash_three"), &hellos).await;
    let moved = a.iter().zip(&without_d).filter(|(x, y)| x != y).count();
    assert!(
        moved * 100 <= KEYS * 30,
        "{moved} of {KEYS} keys moved when one of 4 servers was removed"
    );
    for (x, y) in a.iter().zip(&without_d) {
        assert!(x == y || x == "srv_d", "a key of {x} moved to {y}");
    }

    let w = map_keys(weighted.addr("hash_weighted"), &hellos).await;
    let on_b = w.iter().filter(|s| *s == "srv_b").count();
    let share_b = on_b as f64 / KEYS as f64;
    assert!(
        (share_b - 2.0 / 3.0).abs() <= 0.05,
        "weights 1:2 gave srv_b {on_b} of {KEYS}"
    );
    for s in [one, two, three, weighted] {
        s.shutdown().await;
    }
}

#[test]
fn check_refuses_hash_key_without_hash_or_on_an_edge() {
    let dir = tempfile::tempdir().unwrap();
    let run = |backend_extra: &str, mode: &str| {
        let text = format!(
            "[global]\nmax_connections = 100\n\n\
             [[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"{mode}\"\nbackend = \"b\"\n\n\
             [[backend]]\nname = \"b\"\n{backend_extra}\nservers = [{{ addr = \"127.0.0.1:9\" }}]\n"
        );
        let path = write_file(dir.path(), "sluice.toml", &text);
        let out = sluice_cli(&["check"], &path);
        (out.status.success(), output_text(&out), path)
    };
    for (extra, mode, why) in [
        (
            "hash_key = \"sni\"",
            "tcp",
            "no effect without balance = \"hash\"",
        ),
        (
            "balance = \"hash\"\nhash_key = \"sni\"",
            "http",
            "needs tcp frontends",
        ),
    ] {
        let (ok, text, path) = run(extra, mode);
        assert!(!ok, "{extra} accepted");
        assert!(text.contains(why), "{extra}: {text}");
        assert!(text.contains(&format!("{}:", path.display())), "{text}");
    }
    for (extra, mode) in [
        ("balance = \"hash\"\nhash_key = \"sni\"", "tcp"),
        ("balance = \"hash\"", "http"),
    ] {
        let (ok, text, _) = run(extra, mode);
        assert!(ok, "{extra}: {text}");
    }
}
