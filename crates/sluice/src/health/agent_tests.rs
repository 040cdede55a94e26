//! The agent reply parser (HAProxy's grammar: words in any order, separators, case, `#`
//! reasons, last word wins; anything unknown refused whole) and one exchange with a real
//! loopback agent (send string, unterminated reply at close, size cap).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn ok(s: &str) -> AgentReply {
    parse_line(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn words_in_any_order_with_any_separator() {
    let r = ok("up ready 75%");
    assert_eq!(r.op, Some(AgentOp::Up));
    assert_eq!(r.admin, Some(AgentAdmin::Ready));
    assert_eq!(r.weight_pct, Some(75));
    assert_eq!(ok("75%,READY\tUp"), r);
    assert_eq!(ok("  drain ").admin, Some(AgentAdmin::Drain));
    assert_eq!(ok("Maint").admin, Some(AgentAdmin::Maint));
    assert_eq!(ok("0%").weight_pct, Some(0));
    assert_eq!(ok("maxconn:30 50%").maxconn, Some(30));
    // The last word of a kind wins, as HAProxy keeps the last one.
    assert_eq!(ok("drain ready").admin, Some(AgentAdmin::Ready));
    assert_eq!(ok("10% 20%").weight_pct, Some(20));
}

#[test]
fn down_words_carry_a_reason() {
    let r = ok("down#backend disk full");
    assert_eq!(r.op, Some(AgentOp::Down("down")));
    assert_eq!(r.reason.as_deref(), Some("backend disk full"));
    assert_eq!(
        ok("stopped # maintenance window").op,
        Some(AgentOp::Down("stopped"))
    );
    assert_eq!(ok("fail").op, Some(AgentOp::Down("fail")));
    assert_eq!(ok("up #").reason, None);
    assert_eq!(ok("down #why").to_string(), "down #why");
}

#[test]
fn anything_else_is_refused_whole() {
    for bad in [
        "",
        "   ",
        ",,",
        "#only a reason",
        "upp",
        "50",
        "%",
        "-5%",
        "+5%",
        "5.5%",
        "25601%",
        "99999999999%",
        "maxconn:",
        "maxconn:x",
        "ready please",
        "up\u{7f}",
        "dra\0in",
    ] {
        assert!(parse_line(bad.as_bytes()).is_err(), "{bad:?} accepted");
    }
    assert!(parse_line("up\u{e9}".as_bytes()).is_err());
    assert!(parse_line(&[b'u'; MAX_REPLY + 1]).is_err());
    assert_eq!(ok("25600%").weight_pct, Some(MAX_PCT));
}

#[test]
fn the_line_ends_at_the_first_cr_or_lf() {
    assert_eq!(line_in(b"up 50%\r\nignored"), Some(&b"up 50%"[..]));
    assert_eq!(line_in(b"drain\nx"), Some(&b"drain"[..]));
    assert_eq!(line_in(b"no end yet"), None);
}

fn target(port: u16, send: &str) -> AgentTarget {
    let agent = spec::Agent {
        addr: None,
        port,
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        send: send.into(),
    };
    AgentTarget::new(&ServerAddr::Inet(([127, 0, 0, 1], 1).into()), &agent, None).unwrap()
}

#[tokio::test]
async fn asks_a_real_agent() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let agent = tokio::spawn(async move {
        // First: reads the send string, answers a terminated line.
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = [0u8; 8];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"backend\n");
        s.write_all(b"up 50%\r\n").await.unwrap();
        drop(s);
        // Second: an unterminated reply, then close.
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"drain").await.unwrap();
        drop(s);
        // Third: an endless line.
        let (mut s, _) = l.accept().await.unwrap();
        let _ = s.write_all(&[b'a'; MAX_REPLY + 10]).await;
        let _ = s.read(&mut [0u8; 1]).await;
    });
    let r = ask(&target(port, "backend\n")).await.unwrap();
    assert_eq!(r.weight_pct, Some(50));
    let r = ask(&target(port, "")).await.unwrap();
    assert_eq!(r.admin, Some(AgentAdmin::Drain));
    let e = ask(&target(port, "")).await.unwrap_err();
    assert!(e.contains("no end of line"), "{e}");
    agent.await.unwrap();
}

#[tokio::test]
async fn a_closed_port_is_an_error_not_a_reply() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    assert!(ask(&target(port, "")).await.is_err());
}
