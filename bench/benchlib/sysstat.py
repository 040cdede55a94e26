"""System-wide CPU for bench/compare (issue #18): busy time of all CPUs from /proc/stat
(user+nice+system+irq+softirq, not idle/iowait/steal) around a load run, minus an idle
baseline measured once. Loopback TCP work lands in whichever process sends, so this shows
moves between the balancer, the load generator and the backend that process CPU hides.
Also "stack CPU": the CPU of the processes of the run (server, backend, load generator) plus
irq/softirq time, which other work on a busy machine barely touches.
"""

import os
import resource
import time

from . import procs

CLK_TCK = os.sysconf("SC_CLK_TCK")
_BASELINE = {"per_s": None, "secs": None}
NOISY = 0.2  # busy CPU s per s while idle beyond which the machine is not quiet


def _cpu_line():
    with open("/proc/stat") as f:
        fields = f.readline().split()
    if fields[0] != "cpu":
        raise RuntimeError("/proc/stat: no aggregate cpu line")
    return [int(x) for x in fields[1:8]]  # user nice system idle iowait irq softirq


def busy_seconds():
    """Busy CPU seconds of the whole machine since boot (the `cpu` line of /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq = _cpu_line()
    return (user + nice + system + irq + softirq) / CLK_TCK


def irq_seconds():
    """irq + softirq seconds of all CPUs (work no process is charged for)."""
    f = _cpu_line()
    return (f[5] + f[6]) / CLK_TCK


def idle_baseline(secs=2.0):
    """Busy CPU seconds per second of a machine doing nothing of ours, measured once."""
    if _BASELINE["per_s"] is None:
        t0, b0 = time.monotonic(), busy_seconds()
        time.sleep(secs)
        t1, b1 = time.monotonic(), busy_seconds()
        _BASELINE["per_s"] = max(0.0, (b1 - b0) / (t1 - t0))
        _BASELINE["secs"] = secs
        if _BASELINE["per_s"] > NOISY:
            print(f"  warning: {_BASELINE['per_s']:.2f} CPU s per s busy while idle: the "
                  "machine is not quiet, system CPU figures are unreliable (stack CPU is not "
                  "affected)", flush=True)
    return _BASELINE["per_s"]


def baseline_info():
    return {"idle_busy_cpu_per_s": _BASELINE["per_s"], "measured_for_s": _BASELINE["secs"],
            "quiet": _BASELINE["per_s"] is not None and _BASELINE["per_s"] <= NOISY}


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(servers, cmd, timeout, env=None, cpu=procs.LOAD_CPU, others=()):
    """Like procs.measured, plus two machine-wide figures over the run. Returns (server CPU
    s, {"sys": busy CPU s of all CPUs minus the idle baseline (None if not above it),
    "stack": CPU s of the servers, `others` (the backend) and the load generator plus irq and
    softirq time, "busy_raw": busy CPU s before subtracting}, load stdout)."""
    base = idle_baseline()
    before = sum(s.cpu() for s in servers)
    o0, c0, i0 = sum(p.cpu() for p in others), _children_cpu(), irq_seconds()
    t0, b0 = time.monotonic(), busy_seconds()
    out = procs.run_load(cmd, timeout, env, cpu=cpu)
    t1, b1 = time.monotonic(), busy_seconds()
    o1, c1, i1 = sum(p.cpu() for p in others), _children_cpu(), irq_seconds()
    after = sum(s.cpu() for s in servers)
    sys_cpu = (b1 - b0) - base * (t1 - t0)
    stack = (after - before) + (o1 - o0) + (c1 - c0) + (i1 - i0)
    return after - before, {"sys": sys_cpu if sys_cpu > 0 else None, "stack": stack,
                            "busy_raw": b1 - b0}, out
