//! Black-box tests of the L4 byte pump (`sluice::l4::forward`) over real loopback sockets:
//! byte-exact bulk transfer both ways, half-close, close and reset propagation, idle timeout,
//! forced stop, and a unix-socket server side; each with splice(2) on and off.

use std::time::Duration;

use rand::{RngCore, SeedableRng};
use sluice::l4::forward::{forward, End, ForwardOpts, Outcome, Pumpable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single test step: a hang fails instead of blocking CI.
const LIMIT: Duration = Duration::from_secs(60);

fn opts(splice: bool) -> ForwardOpts {
    ForwardOpts {
        idle: Duration::from_secs(120),
        splice,
    }
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A connected loopback TCP pair: (connecting side from 127.0.0.2, accepted side).
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind client");
    let (connected, accepted) = tokio::join!(socket.connect(addr), listener.accept());
    let connected = connected.expect("connect");
    let (accepted, peer) = accepted.expect("accept");
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
    (connected, accepted)
}

/// client_app <-> [forward] <-> server_app, over TCP on both sides.
async fn tcp_setup(
    opts: ForwardOpts,
    token: Option<CancellationToken>,
) -> (TcpStream, TcpStream, JoinHandle<Outcome>) {
    let (client_app, proxy_client) = tcp_pair().await;
    let (proxy_server, server_app) = tcp_pair().await;
    let handle =
        tokio::spawn(async move { forward(proxy_client, proxy_server, &opts, token).await });
    (client_app, server_app, handle)
}

async fn outcome(handle: JoinHandle<Outcome>) -> Outcome {
    timeout(LIMIT, handle)
        .await
        .expect("forward finishes")
        .expect("forward task")
}

/// Writes `data`, shuts down the write half, and reads everything the peer sends until EOF.
async fn exchange<T>(stream: T, data: Vec<u8>) -> Vec<u8>
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.expect("write");
        wr.shutdown().await.expect("shutdown write");
        wr
    });
    let mut got = Vec::new();
    rd.read_to_end(&mut got).await.expect("read to end");
    let _ = writer.await.expect("writer");
    got
}

async fn bulk_both_ways(splice: bool) {
    const LEN: usize = 10 * 1024 * 1024;
    let up = payload(LEN, 1);
    let down = payload(LEN, 2);
    let (client_app, server_app, handle) = tcp_setup(opts(splice), None).await;
    let client = tokio::spawn(exchange(client_app, up.clone()));
    let server = tokio::spawn(exchange(server_app, down.clone()));
    let (at_client, at_server) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .expect("transfer finishes");
    let (at_client, at_server) = (at_client.expect("client"), at_server.expect("server"));
    assert!(
        at_server == up,
        "client->server bytes differ (got {} bytes)",
        at_server.len()
    );
    assert!(
        at_client == down,
        "server->client bytes differ (got {} bytes)",
        at_client.len()
    );
    let out = outcome(handle).await;
    assert_eq!(out.to_server, LEN as u64);
    assert_eq!(out.to_client, LEN as u64);
    assert!(
        matches!(out.end, End::ClientClosed | End::ServerClosed),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_both_ways_with_splice() {
    bulk_both_ways(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_both_ways_with_copy() {
    bulk_both_ways(false).await;
}

async fn half_close(splice: bool) {
    const RESPONSE: usize = 1024 * 1024;
    let response = payload(RESPONSE, 3);
    let (client_app, mut server_app, handle) = tcp_setup(opts(splice), None).await;
    let expected = response.clone();
    let server = tokio::spawn(async move {
        let mut request = Vec::new();
        server_app
            .read_to_end(&mut request)
            .await
            .expect("server reads to EOF");
        assert_eq!(request, b"GET /big HTTP/1.0\r\n\r\n");
        server_app
            .write_all(&expected)
            .await
            .expect("server writes");
        // Dropping closes: FIN after the response.
    });
    let got = timeout(
        LIMIT,
        exchange(client_app, b"GET /big HTTP/1.0\r\n\r\n".to_vec()),
    )
    .await
    .expect("client finishes");
    assert!(
        got == response,
        "client got {} of {RESPONSE} response bytes",
        got.len()
    );
    server.await.expect("server");
    let out = outcome(handle).await;
    assert_eq!(out.end, End::ClientClosed);
    assert_eq!(out.to_server, 21);
    assert_eq!(out.to_client, RESPONSE as u64);
}

#[tokio::test]
async fn half_closed_client_still_gets_the_whole_response_with_splice() {
    half_close(true).await;
}

#[tokio::test]
async fn half_closed_client_still_gets_the_whole_response_with_copy() {
    half_close(false).await;
}

async fn server_closes_first(splice: bool) {
    let (mut client_app, mut server_app, handle) = tcp_setup(opts(splice), None).await;
    server_app.write_all(b"bye").await.expect("server writes");
    drop(server_app);
    let mut got = Vec::new();
    timeout(Duration::from_secs(5), client_app.read_to_end(&mut got))
        .await
        .expect("client sees EOF promptly")
        .expect("read");
    assert_eq!(got, b"bye");
    drop(client_app);
    let out = outcome(handle).await;
    assert_eq!(out.end, End::ServerClosed);
    assert_eq!((out.to_server, out.to_client), (0, 3));
}

#[tokio::test]
async fn server_close_reaches_the_client_with_splice() {
    server_closes_first(true).await;
}

#[tokio::test]
async fn server_close_reaches_the_client_with_copy() {
    server_closes_first(false).await;
}

/// Bytes followed by a FIN that both arrived before the pump reads them go out as the last
/// write before the client's shutdown (or, when the client had already finished, before the
/// close): they reach the client intact, followed by its EOF.
async fn last_bytes_with_fin(client_done_first: bool) {
    let (mut client_app, proxy_client) = tcp_pair().await;
    let (proxy_server, mut server_app) = tcp_pair().await;
    if client_done_first {
        client_app.shutdown().await.expect("client shutdown");
    }
    server_app
        .write_all(b"last words")
        .await
        .expect("server writes");
    drop(server_app);
    let handle =
        tokio::spawn(async move { forward(proxy_client, proxy_server, &opts(false), None).await });
    let mut got = Vec::new();
    timeout(LIMIT, client_app.read_to_end(&mut got))
        .await
        .expect("client sees EOF")
        .expect("read");
    assert_eq!(got, b"last words");
    drop(client_app);
    let out = outcome(handle).await;
    assert_eq!((out.to_server, out.to_client), (0, 10));
}

#[tokio::test]
async fn last_bytes_before_the_server_fin_reach_the_client_before_its_eof() {
    last_bytes_with_fin(false).await;
}

#[tokio::test]
async fn last_bytes_reach_a_client_that_finished_first() {
    last_bytes_with_fin(true).await;
}

fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("linger 0");
    drop(stream); // close with SO_LINGER 0 sends RST
}

async fn reset_ends_both(splice: bool, client_resets: bool) {
    let (mut client_app, mut server_app, handle) = tcp_setup(opts(splice), None).await;
    // Prove the pair works before the reset.
    client_app.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    server_app
        .read_exact(&mut buf)
        .await
        .expect("server reads ping");
    let (gone, mut survivor) = if client_resets {
        (client_app, server_app)
    } else {
        (server_app, client_app)
    };
    reset(gone);
    let out = outcome(handle).await;
    let expected = if client_resets {
        End::ClientError(std::io::ErrorKind::ConnectionReset)
    } else {
        End::ServerError(std::io::ErrorKind::ConnectionReset)
    };
    assert_eq!(out.end, expected, "{out:?}");
    assert_eq!(out.to_server, 4);
    // The other side is closed too: it reads EOF (or a reset), never hangs.
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(5), survivor.read_to_end(&mut rest))
        .await
        .expect("survivor sees the end promptly");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
}

#[tokio::test]
async fn client_reset_ends_both_with_splice() {
    reset_ends_both(true, true).await;
}

#[tokio::test]
async fn client_reset_ends_both_with_copy() {
    reset_ends_both(false, true).await;
}

#[tokio::test]
async fn server_reset_ends_both_with_splice() {
    reset_ends_both(true, false).await;
}

#[tokio::test]
async fn server_reset_ends_both_with_copy() {
    reset_ends_both(false, false).await;
}

async fn idle_timeout(splice: bool) {
    let start = tokio::time::Instant::now();
    let idle = ForwardOpts {
        idle: Duration::from_secs(60),
        splice,
    };
    let (mut client_app, mut server_app, handle) = tcp_setup(idle, None).await;
    // Activity 30 s in pushes the deadline to 90 s.
    tokio::time::sleep(Duration::from_secs(30)).await;
    // The byte crosses with the clock held: an auto-advance while it is still in the kernel
    // would fire the 60 s deadline it pushes.
    let mut one = [0u8; 1];
    crate::support::hold_clock("the byte crosses the pair", async {
        client_app.write_all(b"x").await.expect("write");
        server_app.read_exact(&mut one).await.expect("server reads");
    })
    .await;
    // Paused clock: this limit is virtual time, beyond the expected 90 s.
    let out = timeout(Duration::from_secs(600), handle)
        .await
        .expect("idle end")
        .expect("task");
    assert_eq!(out.end, End::IdleTimeout);
    assert_eq!((out.to_server, out.to_client), (1, 0));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(90),
        "timed out after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(92),
        "timed out after {waited:?}"
    );
    // Both sides are closed.
    let mut rest = Vec::new();
    assert_eq!(
        client_app.read_to_end(&mut rest).await.expect("client EOF"),
        0
    );
    assert_eq!(
        server_app.read_to_end(&mut rest).await.expect("server EOF"),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn silent_pair_ends_on_idle_timeout_with_splice() {
    idle_timeout(true).await;
}

#[tokio::test(start_paused = true)]
async fn silent_pair_ends_on_idle_timeout_with_copy() {
    idle_timeout(false).await;
}

#[tokio::test]
async fn cancellation_stops_the_pair() {
    let token = CancellationToken::new();
    let (mut client_app, _server_app, handle) = tcp_setup(opts(true), Some(token.clone())).await;
    token.cancel();
    let out = outcome(handle).await;
    assert_eq!(out.end, End::Shutdown);
    let mut rest = Vec::new();
    assert_eq!(
        client_app.read_to_end(&mut rest).await.expect("client EOF"),
        0
    );
}

async fn unix_server(splice: bool) {
    const LEN: usize = 4 * 1024 * 1024;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.sock");
    let listener = UnixListener::bind(&path).expect("bind unix");
    let (client_app, proxy_client) = tcp_pair().await;
    let (proxy_server, accepted) = tokio::join!(UnixStream::connect(&path), listener.accept());
    let (proxy_server, server_app) = (proxy_server.expect("connect"), accepted.expect("accept").0);
    let o = opts(splice);
    let handle = tokio::spawn(async move { forward(proxy_client, proxy_server, &o, None).await });
    let (up, down) = (payload(LEN, 4), payload(LEN, 5));
    let client = tokio::spawn(exchange(client_app, up.clone()));
    let server = tokio::spawn(exchange(server_app, down.clone()));
    let (at_client, at_server) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .expect("transfer finishes");
    assert!(
        at_server.expect("server") == up,
        "client->unix server bytes differ"
    );
    assert!(
        at_client.expect("client") == down,
        "unix server->client bytes differ"
    );
    let out = outcome(handle).await;
    assert_eq!((out.to_server, out.to_client), (LEN as u64, LEN as u64));
    assert!(
        matches!(out.end, End::ClientClosed | End::ServerClosed),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_server_with_splice() {
    unix_server(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_server_with_copy() {
    unix_server(false).await;
}

fn assert_send<T: Send>(_: &T) {}
fn assert_pumpable<T: Pumpable>() {}

#[tokio::test]
async fn idle_pair_is_small_and_the_future_is_send() {
    assert_pumpable::<TcpStream>();
    assert_pumpable::<UnixStream>();
    let (_client_app, proxy_client) = tcp_pair().await;
    let (proxy_server, _server_app) = tcp_pair().await;
    let o = opts(true);
    let fut = forward(proxy_client, proxy_server, &o, None);
    assert_send(&fut);
    let size = std::mem::size_of_val(&fut);
    println!("forward() future: {size} bytes (pipes and buffers are allocated on first data)");
    assert!(size < 4096, "forward() future is {size} bytes");
}
