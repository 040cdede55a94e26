//! Selection cost per pick for each algorithm with 2 and 50 servers (lease taken and dropped
//! inside the measured loop, as on the accept path). No I/O; health checks are not measured.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sluice::addr::{ClientAddr, PeerAddr};
use sluice::balance::{Pool, ServerAddr};
use sluice::spec::{Backend, Balance, Server, Timeouts};

fn pool(balance: Balance, n: usize) -> std::sync::Arc<Pool> {
    let connect = Duration::from_secs(5);
    let servers = (0..n)
        .map(|i| Server {
            name: format!("srv{}", i + 1),
            addr: ServerAddr::Inet(SocketAddr::from(([127, 0, 0, 10], 9000 + i as u16))),
            weight: 1 + i as u32 % 3,
            backup: false,
            max_connections: 0,
            slow_start: Duration::ZERO,
        })
        .collect();
    Pool::new(&Backend {
        name: "bench".into(),
        balance,
        hash_key: Default::default(),
        send_proxy: Default::default(),
        proxy_v2_unique_id: false,
        proxy_v2_crc32c: true,
        proxy_v2_authority: false,
        proxy_v2_alpn: false,
        proxy_v2_pass_tlvs: false,
        source: None,
        retries: 3,
        timeouts: Timeouts {
            connect,
            idle: Duration::from_secs(300),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
            queue: connect,
            preread: Duration::from_secs(30),
        },
        health: None,
        protocol: Default::default(),
        tls: None,
        fastcgi: Default::default(),
        resolve_interval: Duration::from_secs(30),
        max_queue: sluice::spec::DEFAULT_MAX_QUEUE,
        servers,
    })
}

fn select(c: &mut Criterion) {
    let mut g = c.benchmark_group("select");
    for (balance, name) in [
        (Balance::Roundrobin, "roundrobin"),
        (Balance::Leastconn, "leastconn"),
        (Balance::Source, "source"),
        (Balance::Random, "random"),
        (Balance::Hash, "hash"),
    ] {
        for n in [2usize, 50] {
            let p = pool(balance, n);
            let mut k: u32 = 0;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
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
