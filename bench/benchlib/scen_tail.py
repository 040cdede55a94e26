"""Scenario 15: tail latency of the whole seed stack under open-loop load (issue #18).
Scenario 8's stacks (balancer + 2 edges + the shared uwsgi Flask apps). First the peer
stack's saturation, closed loop (`tlsclients.py closedloop`, SAT_WORKERS workers, the same
request mix); then `tlsclients.py openloop` at 30, 60 and 90 % of it, each stack in turn
(A/B per rate, every round): one request in NEWSHARE on a new TLS connection (full
handshake), the rest on keep-alive connections; latency from each request's due time
(corrects for coordinated omission). Figures per rate: p50, p99, p99.9 (failures count as
the slowest), and the client's own worst dispatch lag.
"""

import os
import re
import sys

from . import procs
from .scen_seed import start_apps, start_stack, wait_serving

LEVELS = (30, 60, 90)  # % of the peer stack's saturation
NEWSHARE = 10  # one request in 10 on a new connection
SAT_WORKERS = 32

FIGURES = [(15, "saturation_req_per_s", "saturation, closed loop (req/s)", "/s", None, False)]
for _lv in LEVELS:
    FIGURES += [
        (15, f"rate_{_lv}", f"open-loop rate at {_lv} % (req/s)", "/s", None, False),
        (15, f"p50_ms_{_lv}", f"latency p50 at {_lv} %", "ms", None, True),
        (15, f"p99_ms_{_lv}", f"latency p99 at {_lv} %", "ms", 1.0, True),
        (15, f"p999_ms_{_lv}", f"latency p99.9 at {_lv} %", "ms", 1.0, True),
        (15, f"failed_{_lv}", f"failed requests at {_lv} %", "", None, True),
        (15, f"lag_ms_{_lv}", f"client's worst dispatch lag at {_lv} %", "ms", None, True),
    ]


def client(env, *args):
    # The client shares the load CPU with the uwsgi apps: at a higher priority its dispatch
    # stays on schedule (lag_ms) while the apps queue, so the queue shows up as latency.
    return ["nice", "-n", "-10", sys.executable, os.path.join(env.bench, "tlsclients.py"),
            *map(str, args)]


def saturation(env, stack, port):
    cmd = client(env, "closedloop", "127.0.0.21", port, SAT_WORKERS, env.duration, NEWSHARE)
    cpu, out = procs.measured(stack, cmd, timeout=env.duration + 60)
    m = re.search(r"RESULT ok=(\d+) failed=(\d+) secs=([\d.]+)", out)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"closed-loop client through port {port}: {out[-400:]}")
    ok, failed, secs = int(m.group(1)), int(m.group(2)), float(m.group(3))
    return ok / secs, failed, cpu * 1e6 / ok


def percentile(lat, q):
    return lat[min(len(lat) - 1, int(q * len(lat)))]


def openloop(env, stack, port, rate, level, log):
    secs = env.duration * 2
    cmd = client(env, "openloop", "127.0.0.21", port, f"{rate:.1f}", secs, NEWSHARE, log)
    _cpu, out = procs.measured(stack, cmd, timeout=secs + 60)
    m = re.search(r"RESULT ok=(\d+) failed=(\d+) lag_ms=([\d.]+) conns=(\d+) secs=([\d.]+)",
                  out)
    if not m:
        raise RuntimeError(f"open-loop client through port {port}: {out[-400:]}")
    ok, failed = int(m.group(1)), int(m.group(2))
    lat = []
    with open(log) as f:
        for line in f:
            cols = line.split("\t")
            if len(cols) >= 3:
                # A failure counts as slower than any answer (it is not left out).
                lat.append(int(cols[2]) / 1000.0 if cols[1] == "200" else float("inf"))
    lat += [float("inf")] * max(0, ok + failed - len(lat))
    if not lat or ok == 0:
        raise RuntimeError(f"no answered request through port {port}: {out[-400:]}")
    lat.sort()
    return {f"rate_{level}": ok / float(m.group(5)), f"p50_ms_{level}": percentile(lat, 0.50),
            f"p99_ms_{level}": percentile(lat, 0.99), f"p999_ms_{level}": percentile(lat, 0.999),
            f"failed_{level}": failed, f"lag_ms_{level}": float(m.group(3)),
            f"conns_{level}": int(m.group(4))}


def run(env, scen, rounds):
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
        sat = {}
        for impl in reversed(impls):  # the peer first: its figure sets the rates
            stack, port = stacks[impl]
            rps, failed, cpu_us = saturation(env, stack, port)
            sat[impl] = rps
            results[impl]["saturation_req_per_s"] = [rps]
            print(f"  saturation {impl:14} {rps:.0f} req/s closed loop ({failed} failed, "
                  f"{cpu_us:.0f} us stack CPU per request)", flush=True)
        peer_sat = sat["haproxy+nginx"]
        for rnd in range(rounds):
            for level in LEVELS:
                rate = peer_sat * level / 100
                for impl in impls:  # A/B per rate
                    stack, port = stacks[impl]
                    log = env.path("tail", f"{impl}-{level}.log")
                    fig = openloop(env, stack, port, rate, level, log)
                    for k, v in fig.items():
                        results[impl].setdefault(k, []).append(v)
                    shown = {k: round(v, 2) for k, v in fig.items()}
                    print(f"  round {rnd + 1} {impl:14} {shown}", flush=True)
    finally:
        for p in started:
            p.stop()
    return results
