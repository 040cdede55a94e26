#!/usr/bin/env python3
"""TLS load clients for bench/compare scenarios 14 and 15 (stdlib only): many idle TLS
connections held from one process, and open-loop / closed-loop HTTP/1.1-over-TLS request
mixes. None measures the server: bench/compare reads its CPU and memory from /proc.

  tlsclients.py tlsidle HOST PORT COUNT PROTO SECONDS
        COUNT TLS 1.3 connections (at most INFLIGHT setting up at once): PROTO h1 sends one
        keep-alive GET /index.html and reads the whole answer; h2 sends the preface and an
        empty SETTINGS, reads the server's SETTINGS, ACKs it and waits for the ACK of its
        own. Prints "READY ok= failed=" once every one is set up or after SECONDS, then
        holds them idle until stdin closes.
  tlsclients.py openloop HOST PORT RATE SECONDS NEWSHARE LOG
        Open loop: request k is due at t0 + k/RATE whatever happened before; one in NEWSHARE
        goes on a new connection (full handshake, `Connection: close`), the others on an
        idle keep-alive connection from a pool (a new one joins the pool when none is
        idle). Latency runs from the due time, not from when the request could be sent, so
        a stalled server cannot hide its queue (no coordinated omission). Writes
        "start_us status latency_us" lines to LOG (failures with status 0) and prints
        "RESULT ok= failed= lag_ms= conns= secs=" (lag: how late the client itself
        dispatched at worst; a large one means the client, not the server, was saturated).
  tlsclients.py closedloop HOST PORT CONNS SECONDS NEWSHARE
        CONNS workers each send their next request when the previous one is answered, the
        same mix as openloop; prints "RESULT ok= failed= secs=" (the saturation rate).
"""

import asyncio
import gc
import resource
import selectors
import socket
import ssl
import struct
import sys
import time

IO_TIMEOUT = 5.0  # seconds per request or connection set-up
MAX_HEAD = 16384  # bytes of response head accepted
MAX_BODY = 1 << 20  # bytes of response body accepted
INFLIGHT = 64  # tlsidle: connections in set-up at once
POOL_MAX = 512  # openloop: keep-alive connections at most
POOL_WARM = 8  # openloop: keep-alive connections opened before the schedule starts
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H1_IDLE_REQUEST = b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
KA_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench-openloop\r\n\r\n"
CLOSE_REQUEST = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench-openloop\r\n"
                 b"Connection: close\r\n\r\n")


def client_ctx(alpn, tls13_only=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls13_only:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([alpn])
    return ctx


def raise_nofile(need):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if need + 64 > hard:
        sys.exit(f"{need} connections do not fit RLIMIT_NOFILE {hard}")


# ---- tlsidle -------------------------------------------------------------------------

class IdleConn:
    """One connection's set-up as a small state machine over a non-blocking socket."""

    def __init__(self, sock, proto, ctx):
        self.sock, self.proto, self.ctx = sock, proto, ctx
        self.state = "connect"  # connect, handshake, talk, done, failed
        self.out = b""
        self.inbuf = b""
        self.got_settings = self.got_ack = False

    def step(self):
        """Advances as far as possible; returns the events to wait for next (or 0)."""
        try:
            if self.state == "connect":
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect")
                # Wrapped once connected (the same descriptor): the caller re-registers it.
                self.sock = self.ctx.wrap_socket(self.sock, server_hostname="localhost",
                                                 do_handshake_on_connect=False)
                self.state = "handshake"
            if self.state == "handshake":
                self.sock.do_handshake()
                if self.sock.version() != "TLSv1.3":
                    raise OSError("not TLS 1.3")
                if self.proto == "h2":
                    if self.sock.selected_alpn_protocol() != "h2":
                        raise OSError("no h2 by ALPN")
                    self.out = H2_PREFACE + struct.pack(">I", 0)[1:] + b"\x04\x00" + b"\0" * 4
                else:
                    self.out = H1_IDLE_REQUEST
                self.state = "talk"
            while self.state == "talk":
                if self.proto == "h2" and self.got_settings and self.got_ack and not self.out:
                    self.state = "done"
                    break
                if self.out:
                    n = self.sock.send(self.out)
                    self.out = self.out[n:]
                    continue
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise OSError("closed by the server")
                self.inbuf += chunk
                if len(self.inbuf) > MAX_HEAD + MAX_BODY:
                    raise OSError("too much data")
                self.parse()
        except ssl.SSLWantReadError:
            return selectors.EVENT_READ
        except ssl.SSLWantWriteError:
            return selectors.EVENT_WRITE
        except (OSError, ValueError):
            self.state = "failed"
        return 0

    def parse(self):
        if self.proto == "h1":
            head, sep, body = self.inbuf.partition(b"\r\n\r\n")
            if not sep:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if not head.startswith(b"HTTP/1.1 200"):
                raise ValueError(head[:40])
            if len(body) >= length:
                self.state = "done"
            return
        while len(self.inbuf) >= 9:
            length = int.from_bytes(self.inbuf[:3], "big")
            ftype, flags = self.inbuf[3], self.inbuf[4]
            if len(self.inbuf) < 9 + length:
                return
            self.inbuf = self.inbuf[9 + length:]
            if ftype == 0x4 and flags & 0x1:
                self.got_ack = True
            elif ftype == 0x4:
                self.got_settings = True
                self.out += b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # SETTINGS ACK
            elif ftype == 0x7:
                raise ValueError("GOAWAY")


def tlsidle(host, port, count, proto, seconds):
    raise_nofile(count)
    ctx = client_ctx("h2" if proto == "h2" else "http/1.1", tls13_only=True)
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + seconds
    held, todo, active = [], count, 0
    ok = failed = 0
    while (todo or active) and time.monotonic() < deadline:
        while todo and active < INFLIGHT:
            todo -= 1
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setblocking(False)
            raw.connect_ex((host, port))
            c = IdleConn(raw, proto, ctx)
            sel.register(raw, selectors.EVENT_WRITE, c)
            active += 1
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            events = c.step()
            sel.unregister(key.fileobj)
            if events:
                sel.register(c.sock, events, c)
                continue
            active -= 1
            if c.state == "done":
                ok += 1
                held.append(c.sock)
            else:
                failed += 1
                c.sock.close()
    failed += todo + active
    print(f"READY ok={ok} failed={failed}", flush=True)
    sys.stdin.read()  # the parent closes our stdin when it has measured
    for s in held:
        s.close()
    print("DONE", flush=True)


# ---- openloop / closedloop -----------------------------------------------------------

async def read_response(reader):
    """Reads one response with a Content-Length; returns (status, server wants close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD:
        raise ValueError("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length > MAX_BODY:
        raise ValueError("response body too large")
    await reader.readexactly(length)
    return status, close


async def connect(host, port, ctx):
    return await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")


async def on_new_conn(host, port, ctx):
    reader, writer = await connect(host, port, ctx)
    try:
        writer.write(CLOSE_REQUEST)
        status, _ = await read_response(reader)
    finally:
        writer.close()
    return status


class Pool:
    """Idle keep-alive connections; a request takes one or opens one (up to POOL_MAX)."""

    def __init__(self, host, port, ctx):
        self.host, self.port, self.ctx = host, port, ctx
        self.idle = asyncio.Queue()
        self.opened = self.live = 0

    async def take(self):
        if self.idle.empty() and self.live < POOL_MAX:
            self.live += 1
            self.opened += 1
            try:
                return await connect(self.host, self.port, self.ctx)
            except BaseException:
                self.live -= 1
                raise
        return await self.idle.get()

    def give(self, conn, reusable):
        if reusable:
            self.idle.put_nowait(conn)
        else:
            conn[1].close()
            self.live -= 1

    async def request(self):
        conn = await self.take()
        reusable = False
        try:
            conn[1].write(KA_REQUEST)
            status, close = await read_response(conn[0])
            reusable = not close
            return status
        finally:
            self.give(conn, reusable)

    def close(self):
        while not self.idle.empty():
            self.idle.get_nowait()[1].close()


async def _openloop(host, port, rate, seconds, newshare, log):
    ctx = client_ctx("http/1.1")
    loop = asyncio.get_running_loop()
    pool = Pool(host, port, ctx)
    warm = await asyncio.gather(*(connect(host, port, ctx) for _ in range(POOL_WARM)))
    for conn in warm:
        pool.live += 1
        pool.opened += 1
        pool.give(conn, True)
    total = min(int(rate * seconds), 1_000_000)
    out, stats, tasks = [], {"ok": 0, "failed": 0}, set()
    t0, wall0 = loop.time() + 0.2, time.time() + 0.2

    async def one(k, due):
        status = 0
        try:
            job = on_new_conn(host, port, ctx) if k % newshare == 0 else pool.request()
            status = await asyncio.wait_for(job, IO_TIMEOUT)
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        latency = loop.time() - due
        stats["ok" if status == 200 else "failed"] += 1
        out.append(f"{int((wall0 + due - t0) * 1e6)}\t{status}\t{int(latency * 1e6)}\n")

    lag, k = 0.0, 0
    while k < total:
        now = loop.time()
        due = t0 + k / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        # Everything due by now goes out at once (the loop may wake late): none is skipped.
        while k < total and t0 + k / rate <= now:
            lag = max(lag, now - (t0 + k / rate))
            t = asyncio.ensure_future(one(k, t0 + k / rate))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            k += 1
    if tasks:
        await asyncio.wait(list(tasks), timeout=IO_TIMEOUT * 3)
    pool.close()
    with open(log, "w") as f:
        f.writelines(out)
    print(f"RESULT ok={stats['ok']} failed={stats['failed'] + total - len(out)} "
          f"lag_ms={lag * 1e3:.2f} conns={pool.opened} secs={loop.time() - t0:.3f}")


async def _closedloop(host, port, conns, seconds, newshare):
    ctx = client_ctx("http/1.1")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    stats = {"ok": 0, "failed": 0, "k": 0}

    async def worker():
        pool = Pool(host, port, ctx)
        while loop.time() < deadline and stats["k"] < 10_000_000:
            k = stats["k"]
            stats["k"] += 1
            try:
                job = on_new_conn(host, port, ctx) if k % newshare == 0 else pool.request()
                status = await asyncio.wait_for(job, IO_TIMEOUT)
            except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                status = 0
            stats["ok" if status == 200 else "failed"] += 1
        pool.close()

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(conns)))
    print(f"RESULT ok={stats['ok']} failed={stats['failed']} secs={loop.time() - started:.3f}")


def main(argv):
    if len(argv) == 6 and argv[0] == "tlsidle" and argv[4] in ("h1", "h2"):
        tlsidle(argv[1], int(argv[2]), int(argv[3]), argv[4], float(argv[5]))
    elif len(argv) == 7 and argv[0] == "openloop":
        raise_nofile(POOL_MAX + 1024)
        gc.disable()  # no collector pauses in the client's own timing (bounded run)
        asyncio.run(_openloop(argv[1], int(argv[2]), float(argv[3]), float(argv[4]),
                              int(argv[5]), argv[6]))
    elif len(argv) == 6 and argv[0] == "closedloop":
        gc.disable()
        asyncio.run(_closedloop(argv[1], int(argv[2]), int(argv[3]), float(argv[4]),
                                int(argv[5])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
