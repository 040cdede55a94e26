#!/usr/bin/env python3
"""Small load clients bench/compare needs and the installed tools lack (stdlib only).

  clients.py resume HOST PORT SECONDS   TLS 1.3 connections resuming the previous session,
                                        one GET / each; prints "RESULT total= resumed= full="
  clients.py idle HOST PORT COUNT SRC   opens COUNT TCP connections from SRC, sends nothing,
                                        prints "READY n", holds them until stdin closes
  clients.py paced HOST PORT CONNS RATE SECONDS LOG [burst]
                                        CONNS TLS keep-alive HTTP/1.1 connections share RATE
                                        requests/s on one evenly spaced schedule (request k at
                                        k/RATE, on connection k mod CONNS), or with `burst`
                                        all CONNS send at once every CONNS/RATE s; writes
                                        h2load's --log-file format (start_us, status,
                                        latency_us) to LOG and prints
                                        "RESULT ok= failed= late= secs="
  clients.py slowread HOST PORT COUNT PATH SECONDS
                                        COUNT TLS connections each send one GET PATH, read
                                        the response head and stop reading (an 8 KiB
                                        receive buffer); prints "READY ok= other= failed="
                                        when every one got its head or after SECONDS, holds
                                        them until stdin closes

None measures the server: bench/compare reads the server's CPU and memory from /proc.
"""

import asyncio
import resource
import socket
import ssl
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
MAX_RESPONSE = 1 << 20  # bytes read per connection at most
IO_TIMEOUT = 5.0  # seconds per socket operation
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux


def read_response(tls):
    """Reads until the server closes (Connection: close), bounded in size and time."""
    got = 0
    while got < MAX_RESPONSE:
        try:
            chunk = tls.recv(65536)
        except (ssl.SSLZeroReturnError, ConnectionResetError):
            break
        if not chunk:
            break
        got += len(chunk)
    return got


def resume(host, port, seconds):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    session = None
    total = resumed = failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and total < 1_000_000:
        try:
            raw = socket.create_connection((host, port), timeout=IO_TIMEOUT)
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(REQUEST)
                if read_response(tls) == 0:
                    failed += 1
                # TLS 1.3 tickets arrive after the handshake: take the session only now,
                # after the whole response was read, so it carries the newest ticket.
                if tls.session_reused:
                    resumed += 1
                session = tls.session
            total += 1
        except OSError:
            failed += 1
            if failed > 100:
                break
    print(f"RESULT total={total} resumed={resumed} full={total - resumed} failed={failed}")


def idle(host, port, count, src):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if count + 64 > hard:
        sys.exit(f"idle: {count} connections do not fit RLIMIT_NOFILE {hard}")
    conns = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Pick the port at connect() time from the whole 4-tuple, so earlier rounds'
        # TIME_WAIT sockets from the same source address do not exhaust the ports.
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        s.settimeout(IO_TIMEOUT)
        s.connect((host, port))
        conns.append(s)
    print(f"READY {len(conns)}", flush=True)
    sys.stdin.read()  # the parent closes our stdin when it has measured
    for s in conns:
        s.close()
    print("DONE", flush=True)


PACED_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench-paced\r\n\r\n"
MAX_HEAD = 16384  # bytes of response head accepted


async def _paced_conn(host, port, ctx, slots, out, stats):
    """One keep-alive connection: sends at each of its slots (monotonic seconds), never
    more than one request in flight (HTTP/1.1 without pipelining); a slot missed because
    the previous response was late is sent at once and counted in `late`."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"), IO_TIMEOUT)
    loop = asyncio.get_running_loop()
    try:
        for slot in slots:
            delay = slot - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                stats["late"] += 1
            start_wall, start = time.time(), time.perf_counter()
            writer.write(PACED_REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            if len(head) > MAX_HEAD:
                raise ValueError("response head too large")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length > MAX_RESPONSE:
                raise ValueError("response body too large")
            await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT)
            latency = time.perf_counter() - start
            out.append(f"{int(start_wall * 1e6)}\t{status}\t{int(latency * 1e6)}\n")
            stats["ok" if status == 200 else "failed"] += 1
    finally:
        writer.close()


async def _paced(host, port, conns, rate, seconds, log, burst):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    loop = asyncio.get_running_loop()
    total = min(int(rate * seconds), 1_000_000)
    # The schedule starts after every connection had time to be made: whatever the
    # handshakes cost, request k is due at t0 + k/rate, the same for every implementation.
    t0 = loop.time() + 1.0
    slots = [[] for _ in range(conns)]
    for k in range(total):
        due = (k - k % conns) if burst else k
        slots[k % conns].append(t0 + due / rate)
    out, stats = [], {"ok": 0, "failed": 0, "late": 0}
    results = await asyncio.gather(
        *(_paced_conn(host, port, ctx, s, out, stats) for s in slots), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    stats["failed"] += total - stats["ok"] - stats["failed"]
    with open(log, "w") as f:
        f.writelines(out)
    secs = loop.time() - t0
    print(f"RESULT ok={stats['ok']} failed={stats['failed']} late={stats['late']} "
          f"secs={secs:.3f} errors={[repr(e) for e in errors][:3]}")


SLOW_RCVBUF = 8192  # bytes of receive buffer of a slow reader (the kernel doubles it)


def _slow_reader(host, port, path, deadline, ctx, ready, release, results, i):
    """One slow client: GET `path`, read until the response head is in, then hold the
    connection without reading until `release` is set."""
    s = None
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.connect((host, port))
        s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "none"
        results[i] = "ok" if status == "200" else "other"
    except (OSError, ValueError, IndexError):
        results[i] = "failed"
    ready.release()
    release.wait()
    if s is not None:
        s.close()


def slowread(host, port, count, path, seconds):
    import threading

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    deadline = time.monotonic() + seconds
    ready, release = threading.Semaphore(0), threading.Event()
    results = [None] * count
    threads = [threading.Thread(target=_slow_reader, daemon=True,
                                args=(host, port, path, deadline, ctx, ready, release,
                                      results, i), name=f"slow-{i}")
               for i in range(count)]
    for t in threads:
        t.start()
    for _ in range(count):
        # Each client gives up by `deadline` on its own; this only bounds the wait for it.
        if not ready.acquire(timeout=max(0.1, deadline - time.monotonic()) + 5):
            break
    done = [r for r in results if r is not None]
    print(f"READY ok={done.count('ok')} other={done.count('other')} "
          f"failed={count - done.count('ok') - done.count('other')}", flush=True)
    sys.stdin.read()  # the parent closes our stdin when it has measured
    release.set()
    for t in threads:
        t.join(timeout=5)
    print("DONE", flush=True)


def main(argv):
    if len(argv) == 5 and argv[1] == "resume":
        resume(argv[2], int(argv[3]), float(argv[4]))
    elif len(argv) == 6 and argv[1] == "idle":
        idle(argv[2], int(argv[3]), int(argv[4]), argv[5])
    elif len(argv) in (8, 9) and argv[1] == "paced" and argv[8:] in ([], ["burst"]):
        asyncio.run(_paced(argv[2], int(argv[3]), int(argv[4]), float(argv[5]),
                           float(argv[6]), argv[7], burst=len(argv) == 9))
    elif len(argv) == 7 and argv[1] == "slowread":
        slowread(argv[2], int(argv[3]), int(argv[4]), argv[5], float(argv[6]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
