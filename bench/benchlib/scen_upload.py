"""Scenario 9: edge uploads and slow readers, the sluice TLS edge vs nginx in front of one
uwsgi app (templates/upload-app.py), request and response buffering on for both (nginx's
defaults: uwsgi_request_buffering, uwsgi_buffering). CPU per request for 64 KiB and 4 MiB
POSTs (h2load --h1 -d FILE, 4 keep-alive connections); then the memory a slow reader costs:
on a freshly started edge, COUNT clients each GET a 1 MiB response, read its head and stop
reading; RSS delta / COUNT once every one has its head (or the wait ran out), and how many
uwsgi workers are still busy then (its stats socket): the slow readers should hold none.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

from . import procs
from .scen_seed import _unix_ready

SIZES = (("64k", 64 * 1024), ("4m", 4 * 1024 * 1024))
MAX_BODY = 8 * 1024 * 1024  # both edges: client_max_body_size 8m / max_body
UPLOAD_CONNS = 4
SLOW_CLIENTS = 200
SLOW_WAIT = 15  # seconds the slow clients get to receive their response heads
APP_WORKERS = 4


def start_app(env):
    sock = env.path("upload-app", "app.sock")
    stats = env.path("upload-app", "stats.sock")
    p = procs.Proc("uwsgi-upload", [
        env.tools["uwsgi"], "--plugin", "python3", "--socket", sock, "--wsgi-file",
        os.path.join(env.bench, "templates", "upload-app.py"), "--master",
        "--processes", str(APP_WORKERS), "--listen", "512", "--buffer-size", "32768",
        "--stats", stats, "--disable-logging", "--die-on-term", "--chmod-socket=666"],
        env.path("upload-app", "uwsgi.log"), cpu=procs.LOAD_CPU)
    procs.wait_for(lambda: _unix_ready(sock), f"uwsgi socket {sock}", timeout=30)
    procs.wait_for(lambda: _unix_ready(stats), f"uwsgi stats {stats}", timeout=30)
    return p, sock, stats


def busy_workers(stats):
    """uwsgi workers busy with a request right now (from its stats socket's JSON)."""
    data = b""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(stats)
        while len(data) < (1 << 20):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    workers = json.loads(data.decode("utf-8", "replace")).get("workers", [])
    return sum(1 for w in workers if w.get("status") == "busy")


def start(env, impl, sock, tag=""):
    crt, key = env.certs()["ecdsa"]
    port = procs.free_port("127.0.0.22")
    name = f"upload-{impl}{tag}-{port}"
    os.makedirs(os.path.join(env.work, name, "tmp"), exist_ok=True)
    values = {"port": port, "cert": crt, "key": key, "sock": sock}
    if impl == "sluice":
        p = env.start_sluice(name, "sluice-upload-edge.toml", max_body_bytes=MAX_BODY,
                             **values)
    else:
        p = env.start_nginx(name, "nginx-upload-edge.conf", max_body=f"{MAX_BODY // 2**20}m",
                            **values)
    procs.wait_port("127.0.0.22", port, p)
    return p, port


def h2load(env, port, path, args):
    # HTTP/1.1 over TLS, as scenario 8 (uwsgi echoes the request's protocol in its status).
    return [env.tools["h2load"], "-t1", "--h1", *args, f"https://127.0.0.22:{port}{path}"]


def parse(out):
    from .scen_edge import parse_h2load
    r = parse_h2load(out)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    r["2xx"] = int(m.group(1)) if m else 0
    r["not_2xx"] = sum(int(x) for x in m.groups()[1:]) if m else 0
    return r


def body_file(env, size):
    path = env.path("upload-bodies", f"body-{size}")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(b"u" * size)
    return path


def uploads(env, proc, port, tag, size):
    cmd = h2load(env, port, "/upload", ["-c", str(UPLOAD_CONNS), "-D", str(int(env.duration)),
                                        "-d", body_file(env, size)])
    cpu, out = procs.measured([proc], cmd, timeout=env.duration + 120)
    r = parse(out)
    if r["2xx"] == 0 or r["not_2xx"]:
        raise RuntimeError(f"{tag} uploads through {proc.name}: {r}")
    return {f"cpu_us_{tag}": cpu * 1e6 / r["2xx"], f"req_per_s_{tag}": r["2xx"] / r["secs"],
            f"failed_{tag}": r["failed"]}


def slow_readers(env, impl, sock, stats):
    """A fresh edge, warmed up; SLOW_CLIENTS slow readers of /mib; RSS delta per client."""
    proc, port = start(env, impl, sock, tag="-slow")
    try:
        # Warm-up (allocator pools, TLS, temp files): 20 whole 1 MiB responses, not counted.
        procs.run_load(h2load(env, port, "/mib", ["-n", "20", "-c", "2"]), timeout=60)
        time.sleep(0.2)  # let the warm-up's connections close before the baseline
        base = proc.rss_kib()
        client = subprocess.Popen(
            ["taskset", "-c", procs.LOAD_CPU, sys.executable,
             os.path.join(env.bench, "clients.py"), "slowread", "127.0.0.22", str(port),
             str(SLOW_CLIENTS), "/mib", str(SLOW_WAIT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = client.stdout.readline()
            m = re.match(r"READY ok=(\d+) other=(\d+) failed=(\d+)", line)
            if not m:
                raise RuntimeError(f"slowread client failed: {line!r}")
            time.sleep(0.5)  # let the edge finish reading what the app still sends
            rss, fds = proc.rss_kib(), proc.fds()
            busy = busy_workers(stats)
        finally:
            client.stdin.close()
            client.wait(timeout=60)
        ok, other, failed = (int(x) for x in m.groups())
        return {"kib_per_slow_client": (rss - base) / SLOW_CLIENTS, "slow_ok": ok,
                "slow_other": other, "slow_failed": failed, "slow_app_busy": busy,
                "slow_rss_before_kib": base,
                "slow_rss_after_kib": rss, "slow_fds": fds}
    finally:
        proc.stop()


def run(env, scen, rounds):
    impls = ["sluice", "nginx"]
    results = {i: {} for i in impls}
    started = []
    try:
        app, sock, stats = start_app(env)
        started.append(app)
        servers = {impl: start(env, impl, sock) for impl in impls}
        started += [p for p, _ in servers.values()]
        for impl, (proc, port) in servers.items():  # warm-up and a check, not measured
            for tag, size in SIZES:
                out = procs.run_load(h2load(env, port, "/upload",
                                            ["-n", "8", "-c", "2", "-d", body_file(env, size)]),
                                     timeout=60)
                r = parse(out)
                if r["2xx"] != 8:
                    raise RuntimeError(f"{impl}: {tag} uploads do not succeed: {r}")
        for rnd in range(rounds):
            for impl in impls:  # A/B/A/B
                proc, port = servers[impl]
                fig = {}
                for tag, size in SIZES:
                    fig.update(uploads(env, proc, port, tag, size))
                fig.update(slow_readers(env, impl, sock, stats))
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                shown = {k: round(v, 2) for k, v in fig.items()}
                print(f"  round {rnd + 1} {impl:6} {shown}", flush=True)
    finally:
        for p in started:
            p.stop()
    return results
