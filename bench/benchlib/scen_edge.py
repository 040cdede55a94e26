"""Scenarios 5-7: the sluice TLS edge vs nginx, both proxying to the shared backend's
trivial static file over HTTP/1.1. 5: full TLS 1.3 handshakes with h2load (one h2 request
per connection, fixed connection rate), ECDSA P-256 and RSA-2048; 6: resumed TLS 1.3
handshakes with clients.py (Python's ssl, session reused each time); 7: h2 keep-alive.
"""

import os
import re
import sys

from . import procs

HANDSHAKE_RATE = 300  # new connections per second in scenario 5 (below saturation)


def start(env, impl, kind):
    crt, key = env.certs()[kind]
    port = procs.free_port("127.0.0.22")
    values = {"port": port, "upstream_port": env.plain_port, "cert": crt, "key": key}
    name = f"edge-{impl}-{kind}-{port}"
    if impl == "sluice":
        p = env.start_sluice(name, "sluice-edge.toml", **values)
    else:
        p = env.start_nginx(name, "nginx-edge.conf", **values)
    procs.wait_port("127.0.0.22", port, p)
    return p, port


def parse_h2load(out):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    t = re.search(r"finished in ([\d.]+)(m?s)", out)
    proto = re.search(r"TLS Protocol: (\S+)", out)
    if not m or not t:
        raise RuntimeError(f"cannot parse h2load output: {out[-600:]}")
    secs = float(t.group(1)) / (1000 if t.group(2) == "ms" else 1)
    return {"succeeded": int(m.group(4)), "failed": int(m.group(5)) + int(m.group(6))
            + int(m.group(7)), "secs": secs, "tls": proto.group(1) if proto else "?"}


def h2load(env, port, args):
    return [env.tools["h2load"], "-t1", *args, f"https://127.0.0.22:{port}/index.html"]


def handshakes(env, proc, port):
    n = int(HANDSHAKE_RATE * env.duration)
    # -r connections per 0.1 s period; -c = -n: every connection makes one request.
    cmd = h2load(env, port, ["-n", str(n), "-c", str(n), "-r", str(HANDSHAKE_RATE // 10),
                             "--rate-period", "100ms"])
    cpu, out = procs.measured([proc], cmd, timeout=env.duration + 120)
    r = parse_h2load(out)
    if r["succeeded"] == 0 or r["tls"] != "TLSv1.3":
        raise RuntimeError(f"handshake run through {proc.name}: {r}")
    return cpu, r


def resumed(env, proc, port):
    cmd = [sys.executable, os.path.join(env.bench, "clients.py"), "resume", "127.0.0.22",
           str(port), str(env.duration)]
    cpu, out = procs.measured([proc], cmd, timeout=env.duration + 60)
    m = re.search(r"RESULT total=(\d+) resumed=(\d+) full=(\d+) failed=(\d+)", out)
    if not m or int(m.group(1)) == 0:
        raise RuntimeError(f"resume client through {proc.name}: {out[-400:]}")
    total, res, failed = int(m.group(1)), int(m.group(2)), int(m.group(4))
    return {"cpu_us_per_resume": cpu * 1e6 / total, "handshakes": total, "resumed": res,
            "resumed_share": res / total, "failed": failed, "cpu_s": cpu}


def h2_keepalive(env, proc, port):
    cmd = h2load(env, port, ["-c", "16", "-m", "10", "-D", str(int(env.duration))])
    cpu, out = procs.measured([proc], cmd, timeout=env.duration + 60)
    r = parse_h2load(out)
    if r["succeeded"] == 0:
        raise RuntimeError(f"h2 run through {proc.name}: {r}")
    return {"cpu_us_per_req": cpu * 1e6 / r["succeeded"],
            "req_per_s": r["succeeded"] / r["secs"], "failed": r["failed"], "cpu_s": cpu}


def run(env, scen, rounds):
    impls = ["sluice", "nginx"]
    kinds = ["ecdsa", "rsa"] if scen == 5 else ["ecdsa"]
    results = {i: {} for i in impls}
    servers = {}
    try:
        for kind in kinds:
            for impl in impls:
                servers[(impl, kind)] = start(env, impl, kind)
        for (impl, kind), (proc, port) in servers.items():  # warm-up, not measured
            procs.run_load(h2load(env, port, ["-n", "200", "-c", "4"]), timeout=60)
        for rnd in range(rounds):
            for kind in kinds:
                for impl in impls:  # A/B/A/B
                    proc, port = servers[(impl, kind)]
                    if scen == 5:
                        cpu, r = handshakes(env, proc, port)
                        fig = {f"{kind}_cpu_us": cpu * 1e6 / r["succeeded"],
                               f"{kind}_handshakes": r["succeeded"],
                               f"{kind}_failed": r["failed"]}
                    elif scen == 6:
                        fig = resumed(env, proc, port)
                    else:
                        fig = h2_keepalive(env, proc, port)
                    for k, v in fig.items():
                        results[impl].setdefault(k, []).append(v)
                    shown = {k: round(v, 2) for k, v in fig.items()}
                    print(f"  round {rnd + 1} {impl:6} {kind:5} {shown}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.stop()
    return results
