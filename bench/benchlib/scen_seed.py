"""Scenario 8: the seed topology end to end. sluice stack = sluice balancer (tcp,
send_proxy v1, source 127.0.0.23) + two sluice edges (127.0.0.24/25: PROXY from the
balancer only, TLS, uwsgi); peer stack = HAProxy + two nginx doing the same. Both stacks
share two uwsgi Flask apps (examples/seed/app.py). clients.py paced sends requests over 8
keep-alive connections below saturation, twice per round: on one evenly spaced schedule, and
in bursts (all 8 at once); it logs each request and p50/p99 come from that log. Not h2load
--rps: its per-client timers start when each client's handshake ends, so how the 8 clients'
requests overlapped depended on the stack under test (see docs/BENCHMARKS.md, scenario 8).
"""

import os
import re
import socket
import sys
import time

from . import procs

EDGE_IPS = ("127.0.0.24", "127.0.0.25")
CLIENTS = 8


def start_apps(env):
    apps = {}
    for ip in EDGE_IPS:
        sock = env.path("apps", f"app-{ip}.sock")
        p = procs.Proc(f"uwsgi-{ip}", [env.tools["uwsgi"], "--plugin", "python3", "--socket",
                                       sock, "--wsgi-file",
                                       os.path.join(env.root, "examples", "seed", "app.py"),
                                       "--master", "--processes", "2", "--disable-logging",
                                       "--die-on-term", "--chmod-socket=666"],
                       env.path("apps", f"uwsgi-{ip}.log"), cpu=procs.LOAD_CPU)
        procs.wait_for(lambda: _unix_ready(sock), f"uwsgi socket {sock}", timeout=30)
        apps[ip] = (p, sock)
    return apps


def _unix_ready(path):
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
        return True
    except OSError:
        return False


def start_stack(env, impl, apps, edge_template="sluice-seed-edge.toml"):
    c = env.certs()
    crt, key = c["ecdsa"]
    port, edge_port = procs.free_port("127.0.0.21"), procs.free_port("127.0.0.24")
    while not _free(EDGE_IPS[1], edge_port):
        edge_port = procs.free_port("127.0.0.24")
    stack = []
    for ip in EDGE_IPS:
        name = f"seed-{impl}-edge-{ip}"
        values = {"ip": ip, "edge_port": edge_port, "cert": crt, "key": key,
                  "ticket": c["ticket"], "secret": c["secret"], "sock": apps[ip][1]}
        if impl == "sluice":
            p = env.start_sluice(name, edge_template, **values)
        else:
            p = env.start_nginx(name, "nginx-seed-edge.conf", **values)
        stack.append(p)
        procs.wait_port(ip, edge_port, p)
    if impl == "sluice":
        lb = env.start_sluice(f"seed-sluice-lb-{port}", "sluice-seed-lb.toml", port=port,
                              edge_port=edge_port)
    else:
        lb = env.start_haproxy(f"seed-haproxy-lb-{port}", "haproxy-seed.cfg", port=port,
                               edge_port=edge_port)
    stack.append(lb)
    procs.wait_port("127.0.0.21", port, lb)
    return stack, port


def _free(ip, port):
    try:
        with socket.socket() as s:
            s.bind((ip, port))
        return True
    except OSError:
        return False


def h2load(env, port, args):
    # HTTP/1.1 over TLS (--h1): the sluice uwsgi client rejects the "HTTP/2.0 200 OK" status
    # line uwsgi echoes for h2 requests (see docs/BENCHMARKS.md); both stacks get the same.
    return [env.tools["h2load"], "-t1", "--h1", *args, f"https://127.0.0.21:{port}/"]


def wait_serving(env, port):
    """Polls a few requests through the stack until all succeed (health checks settle)."""
    from .scen_edge import parse_h2load
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = parse_h2load(procs.run_load(h2load(env, port, ["-n", "20", "-c", "4"]), 30))
            if r["succeeded"] == 20:
                return
        except RuntimeError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the stack on port {port} does not serve requests")


def paced(env, stack, port, rps, log, burst=False):
    if os.path.exists(log):
        os.remove(log)
    secs = env.duration * 2
    cmd = [sys.executable, os.path.join(env.bench, "clients.py"), "paced", "127.0.0.21",
           str(port), str(CLIENTS), str(rps * CLIENTS), str(secs), log]
    if burst:
        cmd.append("burst")
    cpu, out = procs.measured(stack, cmd, timeout=secs + 60)
    m = re.search(r"RESULT ok=(\d+) failed=(\d+) late=(\d+) secs=([\d.]+)", out)
    if not m:
        raise RuntimeError(f"paced client through port {port}: {out[-400:]}")
    ok, failed, late, took = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
    lat = []
    with open(log) as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) >= 3 and cols[1] == "200":
                lat.append(int(cols[2]) / 1000.0)
    if not lat:
        raise RuntimeError(f"no successful request through port {port}: {out[-400:]}")
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return {"req_per_s": ok / max(took, 1e-9), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "failed": failed, "late": late, "stack_cpu_s": cpu,
            "stack_cpu_us_per_req": cpu * 1e6 / max(1, ok)}


def run(env, scen, rounds, rps=40):
    impls = ["sluice", "haproxy+nginx"]
    results = {i: {} for i in impls}
    started = []
    try:
        apps = start_apps(env)
        started += [p for p, _ in apps.values()]
        stacks = {}
        for impl in impls:
            stack, port = start_stack(env, impl, apps)
            started += stack
            stacks[impl] = (stack, port)
            wait_serving(env, port)
        for rnd in range(rounds):
            for impl in impls:  # A/B/A/B
                stack, port = stacks[impl]
                fig = paced(env, stack, port, rps, env.path("seed", f"{impl}-paced.log"))
                b = paced(env, stack, port, rps, env.path("seed", f"{impl}-burst.log"), True)
                fig.update({"burst_p50_ms": b["p50_ms"], "burst_p99_ms": b["p99_ms"],
                            "failed": fig["failed"] + b["failed"]})
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                shown = {k: round(v, 2) for k, v in fig.items()}
                print(f"  round {rnd + 1} {impl:14} {shown}", flush=True)
    finally:
        for p in started:
            p.stop()
    return results
