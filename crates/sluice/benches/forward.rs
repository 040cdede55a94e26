//! Throughput of the L4 byte pump: 64 MiB client -> server through `forward()` over loopback,
//! splice(2) on vs off. Measures the whole path (sender, pump, receiver share the machine);
//! it does not measure connection setup or many concurrent connections.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::l4::forward::{forward, End, ForwardOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOTAL: usize = 64 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.expect("connect"), accepted.expect("accept").0)
}

/// One 64 MiB transfer through a fresh forwarded pair; panics if a byte goes missing.
async fn transfer(splice: bool, chunk: &'static [u8]) {
    let (mut client_app, proxy_client) = tcp_pair().await;
    let (proxy_server, mut server_app) = tcp_pair().await;
    let opts = ForwardOpts {
        idle: Duration::from_secs(30),
        splice,
    };
    let pump = tokio::spawn(async move { forward(proxy_client, proxy_server, &opts, None).await });
    let writer = tokio::spawn(async move {
        for _ in 0..TOTAL / CHUNK {
            client_app.write_all(chunk).await.expect("write");
        }
        client_app.shutdown().await.expect("shutdown");
        client_app
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0usize;
    loop {
        match server_app.read(&mut buf).await.expect("read") {
            0 => break,
            n => received += n,
        }
    }
    assert_eq!(received, TOTAL);
    drop(server_app);
    drop(writer.await.expect("writer"));
    let out = pump.await.expect("pump");
    assert_eq!(out.to_server, TOTAL as u64);
    assert!(
        matches!(out.end, End::ClientClosed | End::ServerClosed),
        "{out:?}"
    );
}

fn bench_forward(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let chunk: &'static [u8] = Box::leak(vec![0x5au8; CHUNK].into_boxed_slice());
    let mut group = c.benchmark_group("forward_64MiB");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("splice", |b| b.iter(|| rt.block_on(transfer(true, chunk))));
    group.bench_function("copy", |b| b.iter(|| rt.block_on(transfer(false, chunk))));
    group.finish();
}

criterion_group!(benches, bench_forward);
criterion_main!(benches);
