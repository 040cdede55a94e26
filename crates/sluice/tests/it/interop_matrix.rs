//! The interop matrix (issue #5) with real programs: curl from 127.0.0.2 → balancer (from
//! 127.0.0.10) → two TLS edges (127.0.0.11/.12) → the real uWSGI + seed Flask app. Rows: sluice
//! → nginx (PROXY v1, v2), HAProxy → sluice (send-proxy, send-proxy-v2), sluice → sluice (HTTP/2,
//! resumption across edges). Skips loudly without a peer unless SLUICE_REQUIRE_INTEROP=1.

#[path = "interop_matrix/peers.rs"]
mod peers;

use std::path::PathBuf;

use crate::support::*;
use peers::*;

/// A running row: app, two edges, a balancer in front.
struct Stack {
    dir: tempfile::TempDir,
    _app: App,
    edges: Vec<Edge>,
    lb: Balancer,
    curl: PathBuf,
    http2: bool,
}

/// Starts a row; None after a SKIP line when a peer is missing.
async fn stack(lb: LbKind, edge: EdgeKind, http2: bool) -> Option<Stack> {
    let curl = need("curl")?;
    let nginx = match edge {
        EdgeKind::Nginx => Some(need("nginx")?),
        EdgeKind::Sluice { .. } => None,
    };
    let haproxy = match lb {
        LbKind::Haproxy { .. } => Some(need("haproxy")?),
        LbKind::Sluice { .. } => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path()).await?;
    let secrets = Secrets::write(dir.path());
    let mut edges: Vec<Edge> = ["e1", "e2"]
        .iter()
        .zip(EDGE_IPS)
        .map(|(name, ip)| Edge::new(edge, name, ip, dir.path(), &secrets, &app, nginx.as_deref()))
        .collect();
    for e in &mut edges {
        e.start().await;
    }
    let lb = Balancer::start(lb, dir.path(), &edges, haproxy.as_deref()).await;
    Some(Stack {
        dir,
        _app: app,
        edges,
        lb,
        curl,
        http2,
    })
}

impl Stack {
    fn protocol(&self) -> &'static str {
        if self.http2 {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        }
    }

    /// Which edge logged the request tagged `marker` (waits for the line; it is written when
    /// the response ends). Panics if both edges logged it.
    async fn served_by(&self, marker: &str, protocol: &str) -> (usize, String) {
        let needle = format!("/?n={marker} {protocol}\"");
        let mut found = None;
        wait_until(&format!("an edge logging {needle}"), || {
            let mut hits: Vec<(usize, String)> = self
                .edges
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.logged(&needle).map(|l| (i, l)))
                .collect();
            assert!(hits.len() < 2, "both edges logged {needle}: {hits:?}");
            found = hits.pop();
            found.is_some()
        })
        .await;
        found.unwrap()
    }

    /// Sends `n` requests tagged `<tag>0..`; each must be answered by the Flask app seeing
    /// 127.0.0.2 and logged by one edge as coming from 127.0.0.2. Returns the serving edges.
    async fn requests(&self, tag: &str, n: usize) -> Vec<usize> {
        let proto = self.protocol();
        let mut served = Vec::new();
        for i in 0..n {
            let marker = format!("{tag}{i}");
            let r = curl_get(&self.curl, self.lb.addr, &marker, self.http2).await;
            assert_eq!(r.status, "200", "{marker}: {}", r.body);
            let version = if self.http2 { "2" } else { "1.1" };
            assert_eq!(r.http_version, version, "{marker}: curl's HTTP version");
            for want in [
                "hello from the seed app\n".to_string(),
                "client=127.0.0.2\n".to_string(),
                "scheme=https\n".to_string(),
                "https=on\n".to_string(),
                format!("query=n={marker}\n"),
                format!("protocol={proto}\n"),
            ] {
                assert!(
                    r.body.contains(&want),
                    "{marker}: no {want:?} in\n{}",
                    r.body
                );
            }
            let (edge, line) = self.served_by(&marker, proto).await;
            assert!(
                self.edges[edge].line_shows_client(&line),
                "{}'s access log does not show 127.0.0.2: {line}",
                self.edges[edge].name
            );
            served.push(edge);
        }
        served
    }

    /// Both edges serve, alternately, then e1 is killed (the balancer marks it DOWN and every
    /// request succeeds on e2), then e1 is restarted on its port (marked UP, both serve again).
    async fn stop_and_restart_one_edge(&mut self) {
        let both = self.requests("up", 4).await;
        assert_in_turn(&both, "with both edges up");

        self.edges[0].stop();
        self.lb.wait_transition("e1", false, 1).await;
        let rest = self.requests("down", 6).await;
        assert!(
            rest.iter().all(|&e| e == 1),
            "with e1 stopped and marked DOWN every request must go to e2: {rest:?}"
        );

        self.edges[0].start().await;
        self.lb.wait_transition("e1", true, 1).await;
        let again = self.requests("back", 4).await;
        assert_in_turn(&again, "after e1's restart");
        assert_eq!(
            self.lb.transitions("e2", false),
            0,
            "e2 was never stopped but was marked DOWN:\n{}",
            self.lb.log_text()
        );
    }

    /// A full TLS 1.3 handshake on one edge (`s_client -sess_out`), then its ticket on the next
    /// connection (`-sess_in`), which the balancer's roundrobin sends to the other edge: the
    /// edges share the ticket key file, so the session is resumed there.
    async fn resumption_across_edges(&self, openssl: &std::path::Path) {
        let sess = self.dir.path().join("session.pem");
        let lb = self.lb.addr;
        let first = s_client(openssl, lb, "-sess_out", &sess, "tls0").await;
        assert!(first.contains("New, TLSv1.3"), "first connection:\n{first}");
        assert!(first.contains("client=127.0.0.2\n"), "{first}");
        let second = s_client(openssl, lb, "-sess_in", &sess, "tls1").await;
        assert!(
            second.contains("Reused, TLSv1.3"),
            "the other edge did not resume the session:\n{second}"
        );
        assert!(second.contains("client=127.0.0.2\n"), "{second}");
        let (a, line_a) = self.served_by("tls0", "HTTP/1.1").await;
        let (b, line_b) = self.served_by("tls1", "HTTP/1.1").await;
        assert_ne!(a, b, "both s_client connections went to the same edge");
        for (edge, line, resumed) in [(a, &line_a, false), (b, &line_b, true)] {
            let e = &self.edges[edge];
            assert!(e.line_shows_client(line), "{}: {line}", e.name);
            if let Some(r) = e.line_shows_resumed(line) {
                assert_eq!(r, resumed, "{}'s access log: {line}", e.name);
            }
        }
    }
}

/// Consecutive requests went to different edges, and both edges served.
fn assert_in_turn(served: &[usize], when: &str) {
    assert!(
        served.windows(2).all(|w| w[0] != w[1]) && served.contains(&0) && served.contains(&1),
        "{when}: the edges must serve in turn, got {served:?}"
    );
}

// ---------------------------------------------------------------- row 1: sluice → nginx

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_send_proxy_v1_to_two_nginx_edges() {
    let Some(openssl) = need("openssl") else {
        return;
    };
    let lb = LbKind::Sluice { v2: false };
    if let Some(mut s) = stack(lb, EdgeKind::Nginx, true).await {
        s.resumption_across_edges(&openssl).await;
        s.stop_and_restart_one_edge().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_send_proxy_v2_to_two_nginx_edges() {
    let lb = LbKind::Sluice { v2: true };
    if let Some(mut s) = stack(lb, EdgeKind::Nginx, true).await {
        s.stop_and_restart_one_edge().await;
    }
}

// ---------------------------------------------------------------- row 2: HAProxy → sluice

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_to_two_sluice_edges() {
    let lb = LbKind::Haproxy { v2: false };
    if let Some(mut s) = stack(lb, EdgeKind::Sluice { json: false }, false).await {
        s.stop_and_restart_one_edge().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v2_check_send_proxy_to_two_sluice_edges() {
    let lb = LbKind::Haproxy { v2: true };
    if let Some(mut s) = stack(lb, EdgeKind::Sluice { json: false }, false).await {
        s.stop_and_restart_one_edge().await;
    }
}

// ---------------------------------------------------------------- row 3: sluice → sluice

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_sluice_http2_and_resumption_across_edges() {
    let Some(openssl) = need("openssl") else {
        return;
    };
    let lb = LbKind::Sluice { v2: true };
    let Some(mut s) = stack(lb, EdgeKind::Sluice { json: true }, true).await else {
        return;
    };
    s.resumption_across_edges(&openssl).await;
    s.stop_and_restart_one_edge().await;
}
