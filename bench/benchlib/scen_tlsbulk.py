"""Scenario 13: TLS bulk through the edge (issue #18). 64 MiB responses and 64 MiB uploads
over TLS 1.3 (HTTP/1.1, h2load --h1, 2 keep-alive connections), the edge in front of an HTTP
app (the shared backend nginx: GET /big, POST /discard reads the whole body and drops it) or
a uwsgi app (templates/bulk-app.py: streams 64 MiB, or reads and drops the body). Contenders:
sluice (templates/sluice-tls-edge.toml), nginx with its default ssl_buffer_size (16k) and
nginx with ssl_buffer_size 4k (the common low-latency setting). Both edges keep their
defaults: request and response buffering on, with temp files. Figures: edge CPU s per GB
moved and MB/s (h2load's wall time).
"""

import os

from . import procs
from .scen_upload import parse
from .scen_seed import _unix_ready

MIB = 1 << 20
BIG = 64 * MIB
CONNS = 2
MAX_BODY = 65 * MIB
IMPLS = ("sluice", "nginx", "nginx-4k")
APPS = ("http", "uwsgi")
DIRECTIONS = ("dl", "ul")

FIGURES = []
for _app in APPS:
    for _dir, _what in (("dl", "64 MiB responses"), ("ul", "64 MiB uploads")):
        FIGURES += [
            (13, f"{_dir}_{_app}_cpu_s_per_gb", f"CPU per GB, {_what}, {_app} app", "s", 0.7,
             True),
            (13, f"{_dir}_{_app}_mb_per_s", f"throughput, {_what}, {_app} app", "MB/s", None,
             False),
        ]


def start_app(env):
    sock = env.path("bulk-app", "app.sock")
    p = procs.Proc("uwsgi-bulk", [
        env.tools["uwsgi"], "--plugin", "python3", "--socket", sock, "--wsgi-file",
        os.path.join(env.bench, "templates", "bulk-app.py"), "--master", "--processes", "4",
        "--disable-logging", "--die-on-term", "--chmod-socket=666"],
        env.path("bulk-app", "uwsgi.log"), cpu=procs.LOAD_CPU)
    procs.wait_for(lambda: _unix_ready(sock), f"uwsgi socket {sock}", timeout=30)
    return p, sock


def start(env, impl, app, sock):
    crt, key = env.certs()["ecdsa"]
    port = procs.free_port("127.0.0.22")
    name = f"tlsbulk-{impl}-{app}-{port}"
    os.makedirs(os.path.join(env.work, name, "tmp"), exist_ok=True)
    values = {"port": port, "cert": crt, "key": key}
    if impl == "sluice":
        addr = f"127.0.0.20:{env.plain_port}" if app == "http" else f"unix:{sock}"
        p = env.start_sluice(name, "sluice-tls-edge.toml", max_connections=2000,
                             max_body_bytes=MAX_BODY, protocol=app, addr=addr, **values)
    else:
        if app == "http":
            app_pass = ("            proxy_pass http://app;\n"
                        "            proxy_http_version 1.1;\n"
                        "            proxy_set_header Connection \"\";")
        else:
            app_pass = ("            include /etc/nginx/uwsgi_params;\n"
                        f"            uwsgi_pass unix:{sock};")
        ssl_buffer = "        ssl_buffer_size 4k;" if impl == "nginx-4k" else ""
        p = env.start_nginx(name, "nginx-tls-edge.conf", worker_connections=2000,
                            max_body=f"{MAX_BODY // MIB}m", upstream_port=env.plain_port,
                            ssl_buffer=ssl_buffer, app_pass=app_pass, **values)
    procs.wait_port("127.0.0.22", port, p)
    return p, port


def body_file(env):
    path = env.path("bulk-bodies", "body-64m")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            block = b"u" * MIB
            for _ in range(BIG // MIB):
                f.write(block)
    return path


def h2load(env, port, app, direction, n, conns=CONNS):
    if direction == "dl":
        path, extra = "/big", []
    else:
        path, extra = ("/discard" if app == "http" else "/upload"), ["-d", body_file(env)]
    return [env.tools["h2load"], "-t1", "--h1", "-n", str(n), "-c", str(conns), *extra,
            f"https://127.0.0.22:{port}{path}"]


def transfers(env):
    # A count, not a duration: every transfer counted is whole. ~4 per second of --duration.
    return max(4, int(env.duration * 4))


def one_run(env, proc, port, app, direction):
    n = transfers(env)
    cpu, out = procs.measured([proc], h2load(env, port, app, direction, n),
                              timeout=env.duration * 20 + 120)
    r = parse(out)
    if r["2xx"] != n or r["tls"] != "TLSv1.3":
        raise RuntimeError(f"{direction} {app} through {proc.name}: {r}")
    moved = n * BIG
    return {f"{direction}_{app}_cpu_s_per_gb": cpu / (moved / 1e9),
            f"{direction}_{app}_mb_per_s": moved / 1e6 / r["secs"],
            f"{direction}_{app}_cpu_s": cpu}


def run(env, scen, rounds):
    results = {i: {} for i in IMPLS}
    started = []
    try:
        app_proc, sock = start_app(env)
        started.append(app_proc)
        servers = {}
        for impl in IMPLS:
            for app in APPS:
                servers[(impl, app)] = start(env, impl, app, sock)
                started.append(servers[(impl, app)][0])
        for (impl, app), (proc, port) in servers.items():  # warm-up and a check
            for direction in DIRECTIONS:
                r = parse(procs.run_load(h2load(env, port, app, direction, 2, 1), timeout=120))
                if r["2xx"] != 2:
                    raise RuntimeError(f"{impl} {app} {direction}: warm-up failed: {r}")
        for rnd in range(rounds):
            for app in APPS:
                for direction in DIRECTIONS:
                    for impl in IMPLS:  # A/B/C, the same order every round
                        proc, port = servers[(impl, app)]
                        fig = one_run(env, proc, port, app, direction)
                        for k, v in fig.items():
                            results[impl].setdefault(k, []).append(v)
                        shown = {k: round(v, 3) for k, v in fig.items()}
                        print(f"  round {rnd + 1} {impl:8} {shown}", flush=True)
    finally:
        for p in started:
            p.stop()
    return results
