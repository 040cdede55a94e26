"""Process plumbing for bench/compare: start servers pinned to a CPU from rendered config
templates, wait for their ports, read CPU time / RSS / open fds from /proc, run bounded load
commands pinned to the load CPU, and stop everything at exit. No measurement logic here.
"""

import atexit
import os
import re
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_CPU = "0"  # load generators, the shared backend nginx, uwsgi
SERVER_CPU = "1"  # the implementation under test

_RUNNING = []


class Skip(Exception):
    """A scenario cannot run here (the reason is printed)."""


def free_port(ip):
    """A port free on `ip` right now (for peers that cannot bind port 0 themselves)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_port(ip, port, proc=None, timeout=15.0):
    """Polls until `ip:port` accepts a connection, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}); log: "
                               f"{proc.log_tail()}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{ip}:{port} not accepting after {timeout}s")


def wait_for(cond, what, timeout=30.0):
    """Polls `cond()` until true, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    # comm may contain spaces and parentheses: fields start after the last ')'.
    return s[s.rindex(")") + 2:].split()


def children(pid):
    """Direct children of `pid` (nginx workers of a master)."""
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pids):
    """utime+stime (fields 14 and 15) of every pid, all threads included, in seconds."""
    total = 0
    for pid in pids:
        try:
            f = _stat(pid)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # fields 14, 15 (1-based, counted from pid)
    return total / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Proc:
    """A server started by the benchmark; `pids()` includes its worker processes."""

    def __init__(self, name, cmd, log, env=None, cpu=SERVER_CPU, cwd=None):
        self.name = name
        self.log = log
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                ["taskset", "-c", cpu] + cmd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd, start_new_session=True)
        _RUNNING.append(self)

    def pids(self):
        pid = self.popen.pid
        return [pid] + children(pid)

    def cpu(self):
        return cpu_seconds(self.pids())

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())

    def fds(self):
        return sum(fd_count(p) for p in self.pids())

    def log_tail(self, n=800):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        if self in _RUNNING:
            _RUNNING.remove(self)


def stop_all():
    for p in list(_RUNNING):
        try:
            p.stop()
        except Exception as e:  # keep stopping the others
            print(f"warning: stopping {p.name}: {e}")


def install_cleanup():
    atexit.register(stop_all)

    def on_signal(signum, _frame):
        stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_load(cmd, timeout, env=None, cpu=LOAD_CPU):
    """Runs a load generator pinned to `cpu` (the load CPU unless told, e.g. "0,1" for
    scenario 16's unpinned runs); returns its stdout (fails loudly)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(["taskset", "-c", cpu] + cmd, capture_output=True, text=True,
                       timeout=timeout, env=full_env)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-600:]}"
                           f"{r.stdout[-600:]}")
    return r.stdout


def measured(servers, cmd, timeout, env=None):
    """CPU seconds the `servers` spent while `cmd` ran, and its stdout."""
    before = sum(s.cpu() for s in servers)
    out = run_load(cmd, timeout, env)
    after = sum(s.cpu() for s in servers)
    return after - before, out


def parse_wrk(out):
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"no RESULT line from wrk: {out[-600:]}")
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def _patch(path, patch):
    if patch is not None:
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(patch(text))


class Env:
    """Paths, tools, the sluice binary and the shared backend of one benchmark run."""

    def __init__(self, work, bench, root, sluice, tools, duration):
        self.work = work
        self.bench = bench
        self.root = root
        self.sluice = sluice
        self.tools = tools
        self.duration = duration
        self.backend = None
        self.floor = None  # the floor relay binary (bench/floor), built by compare
        self.proxy_port = None
        self.plain_port = None
        self._certs = None

    def path(self, *parts):
        p = os.path.join(self.work, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def render(self, template, out, **values):
        """Fills `@KEY@` placeholders of bench/templates/<template> into `out`."""
        with open(os.path.join(self.bench, "templates", template)) as f:
            text = f.read()
        for k, v in values.items():
            text = text.replace(f"@{k.upper()}@", str(v))
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise RuntimeError(f"{template}: unfilled placeholders {left}")
        with open(out, "w") as f:
            f.write(text)
        return out

    def nginx_dir(self, name):
        d = os.path.join(self.work, name)
        for sub in ("tmp", "www", "logs"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        return d

    def start_nginx(self, name, template, cpu=SERVER_CPU, patch=None, **values):
        d = self.nginx_dir(name)
        conf = self.render(template, os.path.join(d, "nginx.conf"), dir=d, **values)
        _patch(conf, patch)
        return Proc(name, [self.tools["nginx"], "-p", d, "-e", os.path.join(d, "error.log"),
                           "-c", conf], os.path.join(d, "stdout.log"), cpu=cpu)

    def start_sluice(self, name, template, cpu=SERVER_CPU, patch=None, **values):
        """`patch(text) -> text` edits the rendered config (scenario 16: the thread count)."""
        conf = self.render(template, self.path(name, "sluice.toml"),
                           dir=os.path.join(self.work, name), **values)
        _patch(conf, patch)
        check = subprocess.run([self.sluice, "check", "--config", conf], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise Skip(f"sluice check refuses {template}: {check.stdout}{check.stderr}".strip())
        env = {"RUST_LOG": "warn"}  # one worker thread: `threads = 1` in every template
        return Proc(name, [self.sluice, "run", "--config", conf],
                    self.path(name, "stderr.log"), env=env, cpu=cpu)

    def start_haproxy(self, name, template, cpu=SERVER_CPU, patch=None, **values):
        conf = self.render(template, self.path(name, "haproxy.cfg"), **values)
        _patch(conf, patch)
        return Proc(name, [self.tools["haproxy"], "-db", "-f", conf],
                    self.path(name, "stderr.log"), cpu=cpu)

    def start_backend(self):
        """The shared nginx backend on 127.0.0.20 (CPU 0): /index.html and /big (64 MiB)."""
        d = self.nginx_dir("backend")
        with open(os.path.join(d, "www", "index.html"), "w") as f:
            f.write("hello from the benchmark backend\n")
        with open(os.path.join(d, "www", "big"), "wb") as f:
            block = b"x" * (1 << 20)
            for _ in range(64):
                f.write(block)
        self.proxy_port = free_port("127.0.0.20")
        self.plain_port = free_port("127.0.0.20")
        self.backend = self.start_nginx("backend", "backend-nginx.conf", cpu=LOAD_CPU,
                                        proxy_port=self.proxy_port,
                                        plain_port=self.plain_port)
        wait_port("127.0.0.20", self.plain_port, self.backend)

    def certs(self):
        """ECDSA P-256 and RSA-2048 self-signed certificates for `localhost` (openssl)."""
        if self._certs:
            return self._certs
        out = {}
        for kind, alg in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                          ("rsa", ["-newkey", "rsa:2048"])):
            crt, key = self.path("certs", f"{kind}.crt"), self.path("certs", f"{kind}.key")
            subprocess.run([self.tools["openssl"], "req", "-x509", "-nodes", "-days", "30",
                            *alg, "-keyout", key, "-out", crt, "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost"],
                           check=True, capture_output=True, timeout=60)
            out[kind] = (crt, key)
        ticket = self.path("certs", "ticket.key")
        with open(ticket, "wb") as f:
            f.write(os.urandom(80))
        out["ticket"] = ticket
        secret = self.path("certs", "ticket.secret")
        with open(secret, "wb") as f:
            f.write(os.urandom(32))
        out["secret"] = secret
        self._certs = out
        return out
