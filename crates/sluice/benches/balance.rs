//! Selection cost per pick for each algorithm with 2 and 50 servers (lease taken and dropped
//! inside the measured loop, as on the accept path). No I/O; health checks are not measured.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice::addr::{ClientAddr, PeerAddr};
use sluice::balance::{Pool, ServerAddr};
use sluice::config::Backend;

fn pool(balance: &str, n: usize) -> std::sync::Arc<Pool> {
    let servers: Vec<String> = (0..n)
        .map(|i| format!("{{ addr = \"x\", weight = {} }}", 1 + i % 3))
        .collect();
    let cfg: Backend = toml::from_str(&format!(
        "name = \"bench\"\nbalance = \"{balance}\"\nservers = [{}]",
        servers.join(", ")
    ))
    .expect("backend toml");
    let resolved = cfg
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                s.clone(),
                ServerAddr::Inet(SocketAddr::from(([127, 0, 0, 10], 9000 + i as u16))),
            )
        })
        .collect();
    Pool::new(&cfg, resolved)
}

fn select(c: &mut Criterion) {
    let mut g = c.benchmark_group("select");
    for balance in ["roundrobin", "leastconn", "source", "random"] {
        for n in [2usize, 50] {
            let p = pool(balance, n);
            let mut k: u32 = 0;
            g.bench_with_input(BenchmarkId::new(balance, n), &n, |b, _| {
                b.iter(|| {
                    k = k.wrapping_add(0x9e37_79b9);
                    let client =
                        ClientAddr::direct(PeerAddr(SocketAddr::from((k.to_be_bytes(), 40000))));
                    black_box(p.select(&client, &[]).expect("a server"));
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, select);
criterion_main!(benches);
