#!/usr/bin/env python3
"""WebSocket load for bench/compare scenario 10 (Python standard library only).

  ws.py app SOCK                       the app: a unix-socket server that answers a WebSocket
                                       opening handshake with 101 (a real
                                       Sec-WebSocket-Accept) and then echoes every byte it
                                       gets (frames come back as sent: the edges under test
                                       never look inside frames, and the app's CPU stays low)
  ws.py client HOST PORT CONNS SIZE SECONDS
                                       CONNS TLS connections (HTTP/1.1, `Upgrade: websocket`,
                                       checked 101 and accept); each sends one masked binary
                                       frame of SIZE bytes and waits for its echo, again and
                                       again for SECONDS; prints "RESULT msgs= secs= failed="

Every read is bounded (the echo's size, the head's 64 KiB) and times out (IO_TIMEOUT).
"""

import asyncio
import base64
import hashlib
import os
import ssl
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
IO_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


async def read_head(reader):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    if len(head) > MAX_HEAD:
        raise ValueError("head too large")
    return head


async def app_conn(reader, writer):
    try:
        head = await read_head(reader)
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_for(key)
                     + b"\r\n\r\n")
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
            asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def app(sock):
    server = await asyncio.start_unix_server(app_conn, sock, limit=MAX_HEAD)
    os.chmod(sock, 0o666)
    async with server:
        await server.serve_forever()


def frame(size):
    payload = os.urandom(size)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if size < 126:
        head = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    return head + mask + masked


async def client_conn(host, port, ctx, msg, deadline, stats):
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"),
            IO_TIMEOUT)
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
        head = await read_head(reader)
        if not head.startswith(b"HTTP/1.1 101") or accept_for(key) not in head:
            raise ValueError(f"no switch: {head[:200]!r}")
        while time.monotonic() < deadline:
            writer.write(msg)
            echo = await asyncio.wait_for(reader.readexactly(len(msg)), IO_TIMEOUT)
            if echo != msg:
                raise ValueError("echo differs")
            stats["msgs"] += 1
        writer.close()
    except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError) as e:
        stats["failed"] += 1
        stats["error"] = repr(e)


async def client(host, port, conns, size, seconds):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    msg = frame(size)
    stats = {"msgs": 0, "failed": 0}
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(client_conn(host, port, ctx, msg, deadline, stats)
                           for _ in range(conns)))
    secs = time.monotonic() - start
    print(f"RESULT msgs={stats['msgs']} secs={secs:.3f} failed={stats['failed']}", flush=True)
    if stats["failed"]:
        print(f"last error: {stats.get('error')}", file=sys.stderr)


def main(argv):
    if len(argv) == 3 and argv[1] == "app":
        asyncio.run(app(argv[2]))
    elif len(argv) == 7 and argv[1] == "client":
        asyncio.run(client(argv[2], int(argv[3]), int(argv[4]), int(argv[5]),
                           float(argv[6])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
