//! Fuzzes the balancer's ClientHello peek (`l4::client_hello::inspect`, rustls' `Acceptor`
//! fed with what the client sent so far): any bytes give a hello, "more" or "not TLS", never
//! a panic; a hello's SNI is ASCII. Checks: `sluice::fuzz_check`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sluice::fuzz_check::client_hello(data);
});
