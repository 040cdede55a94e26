"""Scenario 16 (issue #18, "(12) scaling"): 1 vs 2 threads. L4 keep-alive (as scenario 2:
sluice `threads` vs HAProxy `nbthread`) and TLS h2 keep-alive (as scenario 7: sluice
`threads` vs nginx `worker_processes`). Every process is unpinned (CPUs 0-1): servers, load
generators (wrk -t2, h2load -t2) and a backend nginx with 2 workers; 1- and 2-thread runs
alike, so the 2t/1t ratio changes only the thread count. A 2-core machine shares its cores
with the load: it shows the cost per unit of a second thread, not how throughput scales.
"""

import os
import re

from . import procs, sysstat

UNPINNED = "0,1"
KINDS = {"l4": ("sluice", "haproxy"), "h2": ("sluice", "nginx")}


def _threads(n):
    def patch(text):
        out = re.sub(r"(?m)^threads = 1$", f"threads = {n}", text)
        out = re.sub(r"(?m)^    nbthread 1$", f"    nbthread {n}", out)
        out = re.sub(r"(?m)^worker_processes 1;$", f"worker_processes {n};", out)
        if out == text and n != 1:
            raise RuntimeError("scenario 16: no thread count to change in the template")
        return out
    return patch


def start_backend(env):
    """A backend like the shared one (index.html only) but unpinned, 2 workers."""
    d = env.nginx_dir("scale-backend")
    with open(os.path.join(d, "www", "index.html"), "w") as f:
        f.write("hello from the benchmark backend\n")
    proxy_port, plain_port = procs.free_port("127.0.0.20"), procs.free_port("127.0.0.20")
    p = env.start_nginx("scale-backend", "backend-nginx.conf", cpu=UNPINNED, patch=_threads(2),
                        proxy_port=proxy_port, plain_port=plain_port)
    procs.wait_port("127.0.0.20", plain_port, p)
    return p, proxy_port, plain_port


def start(env, kind, impl, n, proxy_port, plain_port):
    ip = "127.0.0.21" if kind == "l4" else "127.0.0.22"
    port = procs.free_port(ip)
    name = f"scale-{kind}-{impl}-{n}t-{port}"
    kw = {"cpu": UNPINNED, "patch": _threads(n), "port": port}
    if kind == "l4" and impl == "sluice":
        p = env.start_sluice(name, "sluice-l4.toml", backend_port=proxy_port, maxconn=2000, **kw)
    elif kind == "l4":
        p = env.start_haproxy(name, "haproxy-l4.cfg", splice="", backend_port=proxy_port,
                              maxconn=2000, **kw)
    else:
        crt, key = env.certs()["ecdsa"]
        values = {"upstream_port": plain_port, "cert": crt, "key": key}
        if impl == "sluice":
            p = env.start_sluice(name, "sluice-edge.toml", **values, **kw)
        else:
            p = env.start_nginx(name, "nginx-edge.conf", **values, **kw)
    procs.wait_port(ip, port, p)
    return p, port


def load_cmd(env, kind, port, secs):
    if kind == "l4":
        return [env.tools["wrk"], "-t2", "-c32", f"-d{int(secs)}s", "--timeout", "10s",
                "-s", os.path.join(env.bench, "templates", "wrk-report.lua"),
                f"http://127.0.0.21:{port}/index.html"]
    return [env.tools["h2load"], "-t2", "-c16", "-m10", "-D", str(int(secs)),
            f"https://127.0.0.22:{port}/index.html"]


def one_run(env, kind, proc, port):
    cpu, mach, out = sysstat.measured([proc], load_cmd(env, kind, port, env.duration),
                                      timeout=env.duration + 60, cpu=UNPINNED,
                                      others=[env.scale_backend])
    if kind == "l4":
        r = procs.parse_wrk(out)
        done, secs = r["requests"], r["duration_us"] / 1e6
        errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    else:
        from .scen_edge import parse_h2load
        r = parse_h2load(out)
        done, secs, errors = r["succeeded"], r["secs"], r["failed"]
    if done == 0 or errors > done // 100:
        raise RuntimeError(f"{kind} run through {proc.name}: {done} done, {errors} errors")
    sys_cpu = mach["sys"]
    return {f"{kind}_cpu_us": cpu * 1e6 / done,
            f"{kind}_sys_us": None if sys_cpu is None else sys_cpu * 1e6 / done,
            f"{kind}_stack_us": mach["stack"] * 1e6 / done, f"{kind}_req_per_s": done / secs}


def run(env, scen, rounds):
    backend, proxy_port, plain_port = start_backend(env)
    env.scale_backend = backend
    servers = {}
    try:
        for kind, impls in KINDS.items():
            for impl in impls:
                for n in (1, 2):
                    servers[(kind, impl, n)] = start(env, kind, impl, n, proxy_port,
                                                     plain_port)
        for (kind, impl, n), (proc, port) in servers.items():  # warm-up, not measured
            procs.run_load(load_cmd(env, kind, port, 1), timeout=60, cpu=UNPINNED)
        results = {}
        for rnd in range(rounds):
            for (kind, impl, n), (proc, port) in servers.items():  # the same order each round
                fig = one_run(env, kind, proc, port)
                acc = results.setdefault(f"{impl}-{n}t", {})
                for k, v in fig.items():
                    acc.setdefault(k, []).append(v)
                shown = {k: round(v, 1) for k, v in fig.items() if v is not None}
                print(f"  round {rnd + 1} {kind} {impl:7} {n}t {shown}", flush=True)
        return results
    finally:
        for proc, _ in servers.values():
            proc.stop()
        backend.stop()


# figure key -> (label, unit, target for sluice 2t/1t or None)
FIGURES = [
    ("l4_cpu_us", "L4 keep-alive: CPU per request", "us", 1.1),
    ("l4_sys_us", "L4 keep-alive: system CPU per request", "us", None),
    ("l4_stack_us", "L4 keep-alive: stack CPU per request", "us", None),
    ("l4_req_per_s", "L4 keep-alive: requests/s", "/s", None),
    ("h2_cpu_us", "TLS h2 keep-alive: CPU per request", "us", 1.1),
    ("h2_sys_us", "TLS h2 keep-alive: system CPU per request", "us", None),
    ("h2_stack_us", "TLS h2 keep-alive: stack CPU per request", "us", None),
    ("h2_req_per_s", "TLS h2 keep-alive: requests/s", "/s", None),
]


def rows(results, make_row):
    """Table rows: sluice 2t vs 1t (the target), the peer's 2t vs 1t, sluice vs the peer at
    1 and at 2 threads. `make_row(label, unit, subject, peer, key, target, lower)`."""
    out = []
    for key, label, unit, target in FIGURES:
        peer = KINDS[key[:2]][1]
        lower = not key.endswith("per_s")
        for subject, other, tgt in (("sluice-2t", "sluice-1t", target),
                                    (f"{peer}-2t", f"{peer}-1t", None),
                                    ("sluice-1t", f"{peer}-1t", None),
                                    ("sluice-2t", f"{peer}-2t", None)):
            row = make_row(label, unit, subject, other, key, tgt, lower)
            if row is not None:
                out.append(row)
    return out
