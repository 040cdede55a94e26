"""Scenario 10: WebSocket message round trips through the sluice TLS edge vs nginx, both in
front of the same app (bench/ws.py app: a real opening handshake, then a byte echo) over
HTTP/1.1 on a unix socket. bench/ws.py client opens CONNS TLS connections, upgrades each and
sends one binary frame at a time, waiting for its echo, for the run's duration; CPU per
round trip (one message each way through the edge), for small and 16 KiB messages.
"""

import os
import re
import sys

from . import procs
from .scen_seed import _unix_ready

CONNS = 8
SIZES = (("small", 128), ("16k", 16 * 1024))


def start_app(env):
    sock = env.path("ws-app", "app.sock")
    p = procs.Proc("ws-app", [sys.executable, os.path.join(env.bench, "ws.py"), "app", sock],
                   env.path("ws-app", "app.log"), cpu=procs.LOAD_CPU)
    procs.wait_for(lambda: _unix_ready(sock), f"ws app socket {sock}", timeout=30)
    return p, sock


def start(env, impl, sock):
    crt, key = env.certs()["ecdsa"]
    port = procs.free_port("127.0.0.22")
    name = f"ws-{impl}-{port}"
    values = {"port": port, "cert": crt, "key": key, "sock": sock}
    if impl == "sluice":
        p = env.start_sluice(name, "sluice-ws-edge.toml", **values)
    else:
        p = env.start_nginx(name, "nginx-ws-edge.conf", **values)
    procs.wait_port("127.0.0.22", port, p)
    return p, port


def client(env, port, size, seconds):
    return [sys.executable, os.path.join(env.bench, "ws.py"), "client", "127.0.0.22",
            str(port), str(CONNS), str(size), str(seconds)]


def parse(out):
    m = re.search(r"^RESULT msgs=(\d+) secs=([\d.]+) failed=(\d+)", out, re.M)
    if not m:
        raise RuntimeError(f"no RESULT line from ws.py: {out[-600:]}")
    return int(m.group(1)), float(m.group(2)), int(m.group(3))


def run(env, scen, rounds):
    impls = ["sluice", "nginx"]
    results = {i: {} for i in impls}
    started = []
    try:
        app, sock = start_app(env)
        started.append(app)
        servers = {impl: start(env, impl, sock) for impl in impls}
        started += [p for p, _ in servers.values()]
        for impl, (proc, port) in servers.items():  # warm-up and a check, not measured
            msgs, _, failed = parse(procs.run_load(client(env, port, 128, 1), timeout=60))
            if msgs == 0 or failed:
                raise RuntimeError(f"{impl}: WebSocket echo does not work ({msgs}, {failed})")
        for rnd in range(rounds):
            for impl in impls:  # A/B/A/B
                proc, port = servers[impl]
                fig = {}
                for tag, size in SIZES:
                    cmd = client(env, port, size, int(env.duration))
                    cpu, out = procs.measured([proc], cmd, timeout=env.duration + 120)
                    msgs, secs, failed = parse(out)
                    if msgs == 0 or failed:
                        raise RuntimeError(f"{impl} {tag}: {msgs} round trips, {failed} failed")
                    fig[f"cpu_us_{tag}"] = cpu * 1e6 / msgs
                    fig[f"msgs_per_s_{tag}"] = msgs / secs
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                shown = {k: round(v, 2) for k, v in fig.items()}
                print(f"  round {rnd + 1} {impl:6} {shown}", flush=True)
    finally:
        for p in started:
            p.stop()
    return results
