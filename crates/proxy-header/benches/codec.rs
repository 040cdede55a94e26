//! Criterion benchmarks: decode and encode of v1 (TCP4, TCP6) and v2 (plain; with ALPN,
//! AUTHORITY, UNIQUE_ID, SSL and CRC32C). One header per iteration; no I/O measured.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use proxy_header::{decode, v1, v2, Addresses, Command, DecodeOptions, Transport, V2Encoder};

fn src4() -> SocketAddr {
    "127.0.0.2:54321".parse().unwrap()
}
fn dst4() -> SocketAddr {
    "127.0.0.1:443".parse().unwrap()
}
fn src6() -> SocketAddr {
    "[2001:db8:85a3::8a2e:370:7334]:54321".parse().unwrap()
}
fn dst6() -> SocketAddr {
    "[2001:db8::1]:443".parse().unwrap()
}

fn v2_with_tlvs(out: &mut [u8]) -> usize {
    let addrs = Addresses::from_socket_addrs(src4(), dst4());
    let mut enc = V2Encoder::new(out, Command::Proxy, Transport::Stream, &addrs).unwrap();
    enc.alpn(b"h2").unwrap();
    enc.authority("www.example.com").unwrap();
    enc.unique_id(b"0123456789abcdef0123456789abcdef").unwrap();
    enc.ssl(
        1,
        0,
        &[(0x21, b"TLSv1.3"), (0x23, b"TLS_AES_128_GCM_SHA256")],
    )
    .unwrap();
    enc.finish(true).unwrap()
}

fn bench(c: &mut Criterion) {
    let opts = DecodeOptions::default();
    let mut b1 = [0u8; 128];
    let n1 = v1::encode(src4(), dst4(), &mut b1).unwrap();
    let mut b6 = [0u8; 128];
    let n6 = v1::encode(src6(), dst6(), &mut b6).unwrap();
    let mut p2 = [0u8; 64];
    let np = v2::encode_proxy(src4(), dst4(), &mut p2).unwrap();
    let mut t2 = [0u8; 256];
    let nt = v2_with_tlvs(&mut t2);

    c.bench_function("decode v1 tcp4", |b| {
        b.iter(|| decode(black_box(&b1[..n1]), &opts))
    });
    c.bench_function("decode v1 tcp6", |b| {
        b.iter(|| decode(black_box(&b6[..n6]), &opts))
    });
    c.bench_function("decode v2 inet", |b| {
        b.iter(|| decode(black_box(&p2[..np]), &opts))
    });
    c.bench_function("decode v2 inet + tlvs + crc32c", |b| {
        b.iter(|| decode(black_box(&t2[..nt]), &opts))
    });

    let mut out = [0u8; 256];
    c.bench_function("encode v1 tcp4", |b| {
        b.iter(|| v1::encode(black_box(src4()), black_box(dst4()), &mut out))
    });
    c.bench_function("encode v1 tcp6", |b| {
        b.iter(|| v1::encode(black_box(src6()), black_box(dst6()), &mut out))
    });
    c.bench_function("encode v2 inet", |b| {
        b.iter(|| v2::encode_proxy(black_box(src4()), black_box(dst4()), &mut out))
    });
    c.bench_function("encode v2 inet + tlvs + crc32c", |b| {
        b.iter(|| v2_with_tlvs(black_box(&mut out)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
