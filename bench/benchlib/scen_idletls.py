"""Scenario 14: memory per idle TLS 1.3 connection on the edge (issue #18). A freshly
started edge (sluice or nginx, templates sluice-tls-edge.toml / nginx-tls-edge.conf, in
front of the shared backend) gets a small warm-up, then `tlsclients.py tlsidle` opens N TLS
1.3 connections and holds them idle: HTTP/1.1 after one keep-alive request each, or HTTP/2
after the SETTINGS exchange. Figure: RSS delta / N (nginx: master + worker). RSS leaves out
kernel socket buffers for both edges.
"""

import os
import re
import subprocess
import sys
import time

from . import procs

SETUP_SECONDS = 120  # the client's bound for setting all connections up

# bench/compare's table rows: (scenario, key, label, unit, target ratio, lower is better)
FIGURES = [
    (14, "kib_per_conn_h1", "RSS per idle TLS 1.3 connection, HTTP/1.1", "KiB", 0.5, True),
    (14, "kib_per_conn_h2", "RSS per idle TLS 1.3 connection, HTTP/2", "KiB", 0.5, True),
    (14, "held_h1", "connections held, HTTP/1.1", "", None, False),
    (14, "held_h2", "connections held, HTTP/2", "", None, False),
]


def start(env, impl, count):
    crt, key = env.certs()["ecdsa"]
    port = procs.free_port("127.0.0.22")
    name = f"idletls-{impl}-{port}"
    values = {"port": port, "cert": crt, "key": key}
    os.makedirs(os.path.join(env.work, name, "tmp"), exist_ok=True)
    if impl == "sluice":
        p = env.start_sluice(name, "sluice-tls-edge.toml", max_connections=count + 500,
                             max_body_bytes=1 << 20, protocol="http",
                             addr=f"127.0.0.20:{env.plain_port}", **values)
    else:
        p = env.start_nginx(name, "nginx-tls-edge.conf", worker_connections=count + 500,
                            max_body="1m", upstream_port=env.plain_port, ssl_buffer="",
                            app_pass="            proxy_pass http://app;\n"
                                 "            proxy_http_version 1.1;\n"
                                 "            proxy_set_header Connection \"\";",
                            **values)
    procs.wait_port("127.0.0.22", port, p)
    return p, port


def idle_run(env, impl, proto, count):
    proc, port = start(env, impl, count)
    try:
        # Warm-up, not counted: TLS, HTTP/1.1 and h2 once each, the upstream pool.
        for args in (["--h1", "-n", "20", "-c", "2"], ["-n", "20", "-c", "2"]):
            procs.run_load([env.tools["h2load"], "-t1", *args,
                            f"https://127.0.0.22:{port}/index.html"], timeout=60)
        time.sleep(0.3)  # the warm-up connections close before the baseline
        base = proc.rss_kib()
        client = subprocess.Popen(
            ["taskset", "-c", procs.LOAD_CPU, sys.executable,
             os.path.join(env.bench, "tlsclients.py"), "tlsidle", "127.0.0.22", str(port),
             str(count), proto, str(SETUP_SECONDS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = client.stdout.readline()
            m = re.match(r"READY ok=(\d+) failed=(\d+)", line)
            if not m:
                raise RuntimeError(f"tlsidle client failed: {line!r}")
            ok, failed = int(m.group(1)), int(m.group(2))
            if ok < count * 0.99:
                raise RuntimeError(f"{impl} {proto}: only {ok} of {count} connections set up")
            time.sleep(0.5)  # let the per-connection state settle (no more growth)
            rss, fds = proc.rss_kib(), proc.fds()
        finally:
            client.stdin.close()
            client.wait(timeout=60)
        return {f"kib_per_conn_{proto}": (rss - base) / ok, f"rss_before_kib_{proto}": base,
                f"rss_after_kib_{proto}": rss, f"held_{proto}": ok,
                f"failed_{proto}": failed, f"fds_{proto}": fds}
    finally:
        proc.stop()


def run(env, scen, rounds, idle_conns=8000):
    impls = ["sluice", "nginx"]
    results = {i: {} for i in impls}
    for rnd in range(rounds):
        for proto in ("h1", "h2"):
            for impl in impls:  # A/B/A/B
                fig = idle_run(env, impl, proto, idle_conns)
                for k, v in fig.items():
                    results[impl].setdefault(k, []).append(v)
                print(f"  round {rnd + 1} {impl:6} {proto} "
                      f"{fig[f'kib_per_conn_{proto}']:.2f} KiB/conn "
                      f"({fig[f'rss_before_kib_{proto}']} -> {fig[f'rss_after_kib_{proto}']} "
                      f"KiB, {fig[f'held_{proto}']} held)", flush=True)
    return results
