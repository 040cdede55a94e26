"""Scenario 12: session resumption across a fleet (issue #17). The seed stack of scenario 8
(a balancer, roundrobin, in front of two edges and uwsgi), with the sluice edges taking their
ticket keys from one shared `ticket_secret` (rotation 12 h) and the nginx edges sharing one
`ssl_session_ticket_key` file. clients.py resume reconnects through the balancer for the run's
duration, presenting the newest ticket each time, so consecutive connections land on
alternate edges: every resumption is a ticket sealed by the other edge. Figures: the share
resumed and CPU per resumed handshake of the two edges together (the balancer's CPU is not
counted: it forwards bytes in both stacks).
"""

import os
import re
import sys

from . import procs, scen_seed


def resumed_through(env, edges, port):
    cmd = [sys.executable, os.path.join(env.bench, "clients.py"), "resume", "127.0.0.21",
           str(port), str(env.duration)]
    cpu, out = procs.measured(edges, cmd, timeout=env.duration + 60)
    m = re.search(r"RESULT total=(\d+) resumed=(\d+) full=(\d+) failed=(\d+)", out)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"resume client through port {port}: {out[-400:]}")
    total, res, failed = int(m.group(1)), int(m.group(2)), int(m.group(4))
    return {"resumed_share": res / total, "cpu_us_per_resume": cpu * 1e6 / total,
            "handshakes": total, "failed": failed, "edges_cpu_s": cpu}


def run(env, scen, rounds):
    impls = ["sluice", "haproxy+nginx"]
    results = {i: {} for i in impls}
    started = []
    try:
        apps = scen_seed.start_apps(env)
        started += [p for p, _ in apps.values()]
        stacks = {}
        for impl in impls:
            stack, port = scen_seed.start_stack(env, impl, apps, "sluice-fleet-edge.toml")
            started += stack
            stacks[impl] = (stack[:2], port)  # the two edges; the balancer is last
            scen_seed.wait_serving(env, port)
        for rnd in range(rounds):
            for impl in impls:  # A/B/A/B
                edges, port = stacks[impl]
                fig = resumed_through(env, edges, port)
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                shown = {k: round(v, 3) for k, v in fig.items()}
                print(f"  round {rnd + 1} {impl:14} {shown}", flush=True)
    finally:
        for p in started:
            p.stop()
    return results
