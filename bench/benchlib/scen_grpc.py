"""Scenario 11: gRPC unary calls through the TLS edge, sluice (`protocol = "grpc"`) vs nginx
(`grpc_pass` with an upstream keep-alive pool), both in front of one grpcio app (the test
app of tests/it/upstream_grpc.rs, Debian python3-grpcio, on CPU 0). The load is h2load
(4 TLS h2 connections, 10 streams each) POSTing one framed 16-byte message to
/test.Echo/Unary; CPU per call of the edge under test. Calls count when h2load saw 2xx and
a sample call through each edge returned grpc-status 0 (a failed gRPC call is HTTP 200 too).
Closed loop, the app (not the edge) is the bottleneck, so the two edges run at different call
rates and batch differently; the same CPU per call is therefore also measured with both edges
at one fixed rate (h2load --rps, 75 % of the slower edge's closed-loop median): equal work
per second, the figure an operator sizing an edge for a given load needs.
"""

import os
import re
import statistics
import subprocess

from . import procs

PYTHON = "/usr/bin/python3"
APP = ("crates", "sluice", "tests", "it", "grpc", "server.py")
CONNS, STREAMS = 4, 10


def start_app(env):
    """The grpcio app on 127.0.0.1 (port 0, printed on its first line); (proc, port)."""
    if subprocess.run([PYTHON, "-c", "import grpc"], capture_output=True).returncode != 0:
        raise procs.Skip("python3-grpcio is not installed")
    log = env.path("grpc-app", "app.log")
    p = procs.Proc("grpc-app", [PYTHON, "-u", os.path.join(env.root, *APP)], log,
                   cpu=procs.LOAD_CPU)
    port = []

    def listening():
        m = re.search(r"^PORT (\d+)$", p.log_tail(4096), re.M)
        if m:
            port.append(int(m.group(1)))
        return bool(port)

    procs.wait_for(listening, "the grpc app's port", timeout=30)
    return p, port[0]


def start(env, impl, app_port):
    crt, key = env.certs()["ecdsa"]
    port = procs.free_port("127.0.0.22")
    name = f"grpc-{impl}-{port}"
    values = {"port": port, "app_port": app_port, "cert": crt, "key": key}
    if impl == "sluice":
        p = env.start_sluice(name, "sluice-grpc-edge.toml", **values)
    else:
        p = env.start_nginx(name, "nginx-grpc-edge.conf", **values)
    procs.wait_port("127.0.0.22", port, p)
    return p, port


def message_file(env):
    path = env.path("grpc", "unary.bin")
    msg = b"0123456789abcdef"
    with open(path, "wb") as f:
        f.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
    return path


def h2load(env, port, args):
    return [env.tools["h2load"], "-t1", "-H", "content-type: application/grpc", "-H",
            "te: trailers", *args, f"https://127.0.0.22:{port}/test.Echo/Unary"]


def sample_call(env, port):
    """One real gRPC unary call through the edge (TLS, the edge's certificate as CA)."""
    crt, _ = env.certs()["ecdsa"]
    # The bench certificate is for localhost (tests/it/grpc/client.py checks app.test).
    code = (
        "import grpc,sys\n"
        "c=grpc.secure_channel(sys.argv[1],grpc.ssl_channel_credentials(open(sys.argv[2],'rb')"
        ".read()),options=(('grpc.ssl_target_name_override','localhost'),))\n"
        "r,call=c.unary_unary('/test.Echo/Unary',lambda b:b,lambda b:b).with_call(b'x',"
        "timeout=10)\n"
        "print(call.code().name, r.decode())\n")
    r = subprocess.run([PYTHON, "-c", code, f"127.0.0.22:{port}", crt], capture_output=True,
                       text=True, timeout=60)
    if r.stdout.strip() != "OK x":
        raise RuntimeError(f"sample gRPC call through port {port}: {r.stdout}{r.stderr}")


def calls(env, proc, port, body, per_conn=None):
    """Closed loop, or with `per_conn` calls per second on each connection (h2load --rps):
    the figures then carry a `_fixed` suffix."""
    from .scen_upload import parse
    pace = ["--rps", str(per_conn)] if per_conn else []
    cmd = h2load(env, port, ["-c", str(CONNS), "-m", str(STREAMS), *pace, "-D",
                             str(int(env.duration)), "-d", body])
    cpu, out = procs.measured([proc], cmd, timeout=env.duration + 120)
    r = parse(out)
    if r["2xx"] == 0 or r["not_2xx"]:
        raise RuntimeError(f"gRPC calls through {proc.name} (pace {per_conn}): {r}")
    if per_conn:
        return {"cpu_us_per_call_fixed": cpu * 1e6 / r["2xx"],
                "calls_per_s_fixed": r["2xx"] / r["secs"]}
    return {"cpu_us_per_call": cpu * 1e6 / r["2xx"], "calls_per_s": r["2xx"] / r["secs"],
            "failed": r["failed"], "cpu_s": cpu}


def run(env, scen, rounds):
    impls = ["sluice", "nginx"]
    results = {i: {} for i in impls}
    app, app_port = start_app(env)
    servers = {}
    try:
        body = message_file(env)
        for impl in impls:
            servers[impl] = start(env, impl, app_port)
        for impl, (proc, port) in servers.items():  # warm-up and a real call, not measured
            sample_call(env, port)
            procs.run_load(h2load(env, port, ["-n", "500", "-c", "4", "-d", body]), timeout=60)
        for rnd in range(rounds):
            for impl in impls:  # A/B/A/B
                proc, port = servers[impl]
                fig = calls(env, proc, port, body)
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                shown = {k: round(v, 2) for k, v in fig.items()}
                print(f"  round {rnd + 1} {impl:6} {shown}", flush=True)
        slower = min(statistics.median(results[i]["calls_per_s"]) for i in impls)
        per_conn = max(1, int(slower * 0.75 / CONNS))
        print(f"  fixed rate: {per_conn * CONNS} calls/s ({per_conn} per connection)", flush=True)
        for rnd in range(rounds):
            for impl in impls:  # A/B/A/B
                proc, port = servers[impl]
                fig = calls(env, proc, port, body, per_conn)
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                shown = {k: round(v, 2) for k, v in fig.items()}
                print(f"  round {rnd + 1} {impl:6} {shown}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.stop()
        app.stop()
    return results
