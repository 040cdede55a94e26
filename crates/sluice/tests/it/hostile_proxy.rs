//! Hostile PROXY headers over real sockets: every rejection class of the decoder (and the
//! frontend's own: timeout, early close) sent to a `proxy_protocol` frontend is closed, logged
//! once with its reason code, and never forwarded; an untrusted peer never sets the client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::support::*;
use proxy_header::{decode, DecodeOptions};
use tokio::io::AsyncWriteExt;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER_HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: signature, version/command byte, family/transport byte, body.
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// 127.0.0.2:1111 -> 127.0.0.1:443 as a v2 INET address block.
const ADDR4: [u8; 12] = [127, 0, 0, 2, 127, 0, 0, 1, 0x04, 0x57, 0x01, 0xbb];

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// A v2 PROXY TCP4 header whose TLV area is `tlvs`.
fn v2_tlvs(tlvs: &[u8]) -> Vec<u8> {
    v2(0x21, 0x11, &[&ADDR4[..], tlvs].concat())
}

/// Every decoder rejection class with an input that triggers it.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut too_long_v2 = v2(0x21, 0x11, &ADDR4);
    too_long_v2[14..16].copy_from_slice(&5000u16.to_be_bytes());
    let ssl_bad_text = tlv(
        0x20,
        &[&[1u8, 0, 0, 0, 0][..], &tlv(0x21, b"\xff")].concat(),
    );
    vec![
        (
            "no_signature",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "v1_too_long",
            [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat(),
        ),
        (
            "v1_lone_cr",
            b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2\rX\n".to_vec(),
        ),
        (
            "v1_lone_lf",
            b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2\n".to_vec(),
        ),
        (
            "v1_bad_protocol",
            b"PROXY TCP5 127.0.0.2 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "v1_empty_field",
            b"PROXY TCP4  127.0.0.2 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "v1_missing_field",
            b"PROXY TCP4 127.0.0.2 127.0.0.1 1\r\n".to_vec(),
        ),
        (
            "v1_extra_field",
            b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2 3\r\n".to_vec(),
        ),
        (
            "v1_bad_address",
            b"PROXY TCP4 127.0.0.256 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "v1_family_mismatch",
            b"PROXY TCP4 ::1 127.0.0.1 1 2\r\n".to_vec(),
        ),
        (
            "v1_bad_port",
            b"PROXY TCP4 127.0.0.2 127.0.0.1 65536 2\r\n".to_vec(),
        ),
        ("v2_bad_version", v2(0x11, 0x11, &ADDR4)),
        ("v2_bad_command", v2(0x22, 0x11, &ADDR4)),
        ("v2_bad_family", v2(0x21, 0x41, &ADDR4)),
        ("v2_bad_transport", v2(0x21, 0x13, &ADDR4)),
        ("v2_too_long", too_long_v2),
        ("v2_short_address", v2(0x21, 0x11, &ADDR4[..4])),
        ("v2_tlv_truncated", v2_tlvs(&[0x04, 0x00, 0x10, 1, 2])),
        ("v2_tlv_trailing", v2_tlvs(&[0x04, 0x00])),
        ("v2_ssl_too_short", v2_tlvs(&tlv(0x20, &[1, 0]))),
        ("v2_tlv_bad_text", v2_tlvs(&ssl_bad_text)),
        ("v2_unique_id_too_long", v2_tlvs(&tlv(0x05, &[b'u'; 129]))),
        ("v2_crc_bad_length", v2_tlvs(&tlv(0x03, &[0, 0]))),
        (
            "v2_crc_duplicate",
            v2_tlvs(&[tlv(0x03, &[0; 4]), tlv(0x03, &[0; 4])].concat()),
        ),
        (
            "v2_crc_mismatch",
            v2_tlvs(&tlv(0x03, &[0xde, 0xad, 0xbe, 0xef])),
        ),
    ]
}

fn config(pp: &str, server: SocketAddr, log: &std::path::Path) -> String {
    format!(
        "[global]\nmax_connections = 200\ngrace = \"1s\"\n\n[[frontend]]\nname = \"fe\"\n\
         bind = [\"127.0.0.1:0\"]\nbackend = \"be\"\naccess_log = \"{}\"\nproxy_protocol = {pp}\n\n\
         [[backend]]\nname = \"be\"\nsend_proxy = \"v1\"\n[[backend.servers]]\nname = \"s\"\naddr = \"{server}\"\n",
        log.display()
    )
}

fn rejected_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("end=proxy_rejected"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_rejection_class_is_closed_logged_once_and_never_forwarded() {
    let server = NamedServer::start(LOOP, "server").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    let pp = "{ trusted = [\"127.0.0.2/32\"], timeout = \"300ms\" }";
    let sl = Sluice::start(&config(pp, server.addr, &log)).await;
    let fe = sl.addr("fe");

    let cases = cases();
    let opts = DecodeOptions::default();
    for (i, (code, bytes)) in cases.iter().enumerate() {
        // The input really is the class it claims (guards the test data itself).
        let err = decode(bytes, &opts).expect_err(code);
        assert_eq!(
            err.reason(),
            *code,
            "test input for {code} decodes as {err}"
        );
        let mut c = client(fe).await;
        // The write may fail if sluice already closed (reset): that is a rejection too.
        let _ = c.write_all(bytes).await;
        assert!(closed_without_data(&mut c).await, "{code}: got data back");
        wait_until(&format!("{code} logged"), || {
            rejected_lines(&log).len() == i + 1
        })
        .await;
        let line = rejected_lines(&log).pop().unwrap();
        assert!(
            line.contains(&format!("reason=\"{code}: ")),
            "{code}: wrong reason in {line}"
        );
        assert!(line.starts_with("127.0.0.2:"), "{code}: {line}");
        assert!(line.contains("server=-"), "{code}: {line}");
    }

    // The frontend's own classes: a silent trusted peer (timeout) and one that hangs up
    // halfway through a header (closed).
    let mut silent = client(fe).await;
    assert!(closed_without_data(&mut silent).await);
    let mut half = client(fe).await;
    half.write_all(b"PROXY TCP4 127.0.0").await.unwrap();
    half.shutdown().await.unwrap();
    drop(half);
    wait_until("timeout and closed logged", || {
        rejected_lines(&log).len() == cases.len() + 2
    })
    .await;
    let all = rejected_lines(&log);
    for code in ["timeout", "closed"] {
        assert_eq!(
            all.iter()
                .filter(|l| l.contains(&format!("reason=\"{code}: ")))
                .count(),
            1,
            "{code}: {all:#?}"
        );
    }
    // Counted: one line per rejected connection, and not one byte reached the server.
    assert_eq!(all.len(), cases.len() + 2);
    assert_eq!(server.accepted(), 0, "a rejected connection was forwarded");

    // A good header afterwards still works: the frontend is not wedged.
    let mut good = client(fe).await;
    good.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 7777 443\r\n")
        .await
        .unwrap();
    assert_eq!(read_line(&mut good).await.as_deref(), Some("server"));
    drop(good);
    let ok = wait_for_log_line(&log, &["server=s"]).await;
    assert!(ok.starts_with("192.0.2.7:7777 "), "{ok}");
    sl.shutdown().await;
}

/// The `direct` policy treats untrusted peers as clients without a header: a forged v1 or
/// v2 header is plain data, the client stays the peer (also l4_proxy's former
/// `direct_policy_treats_untrusted_peers_as_clients_without_header`, merged here).
#[tokio::test]
async fn an_untrusted_header_never_changes_the_client_address() {
    let (server, mut rx) = proxy_capture_server(LOOP).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("conn.log");
    // Only 127.0.0.2 is a trusted balancer; 127.0.0.10 is a direct client.
    let pp = "{ trusted = [\"127.0.0.2/32\"], untrusted = \"direct\" }";
    let sl = Sluice::start(&config(pp, server, &log)).await;
    let forged = [
        b"PROXY TCP4 10.6.6.6 127.0.0.1 6666 443\r\n".to_vec(),
        v2(
            0x21,
            0x11,
            &[10, 6, 6, 6, 127, 0, 0, 1, 0x1a, 0x0a, 0x01, 0xbb],
        ),
    ];
    for bytes in &forged {
        let mut c = within(
            "connect from 127.0.0.10",
            connect_from(OTHER_HOST, sl.addr("fe")),
        )
        .await
        .unwrap();
        let me = c.local_addr().unwrap();
        c.write_all(bytes).await.unwrap();
        assert_eq!(read_line(&mut c).await.unwrap(), format!("src={me}"));
        drop(c);
        let cap = next_capture(&mut rx).await;
        assert_eq!(cap.source, Some(me), "the forged source travelled");
        assert_eq!(
            &cap.data, bytes,
            "the forged header must pass as plain data"
        );
    }
    let mut text = String::new();
    wait_until("both connections logged", || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("127.0.0.10:"))
            .count()
            == 2
    })
    .await;
    assert!(!text.contains("10.6.6.6"), "forged address logged: {text}");
    // Slow: a trusted peer sending its header one byte at a time still gets through within
    // the timeout; the header is judged only when complete.
    let mut c = client(sl.addr("fe")).await;
    for b in b"PROXY TCP4 192.0.2.9 127.0.0.1 9 443\r\n" {
        c.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(read_line(&mut c).await.unwrap(), "src=192.0.2.9:9");
    sl.shutdown().await;
}
