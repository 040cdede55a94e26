#!/usr/bin/env python3
"""Small load clients bench/compare needs and the installed tools lack (stdlib only).

  clients.py resume HOST PORT SECONDS   TLS 1.3 connections resuming the previous session,
                                        one GET / each; prints "RESULT total= resumed= full="
  clients.py idle HOST PORT COUNT SRC   opens COUNT TCP connections from SRC, sends nothing,
                                        prints "READY n", holds them until stdin closes

Neither measures the server: bench/compare reads the server's CPU and memory from /proc.
"""

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


def main(argv):
    if len(argv) == 5 and argv[1] == "resume":
        resume(argv[2], int(argv[3]), float(argv[4]))
    elif len(argv) == 6 and argv[1] == "idle":
        idle(argv[2], int(argv[3]), int(argv[4]), argv[5])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
