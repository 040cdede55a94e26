"""System-wide CPU for bench/compare (issue #18): busy time of all CPUs from /proc/stat
(user+nice+system+irq+softirq, not idle/iowait/steal) around a load run, minus an idle
baseline measured once. Loopback TCP work lands in whichever process sends, so this shows
moves between the balancer, the load generator and the backend that process CPU hides.
"""

import os
import time

from . import procs

CLK_TCK = os.sysconf("SC_CLK_TCK")
_BASELINE = {"per_s": None, "secs": None}


def busy_seconds():
    """Busy CPU seconds of the whole machine since boot (the `cpu` line of /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    if fields[0] != "cpu":
        raise RuntimeError("/proc/stat: no aggregate cpu line")
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / CLK_TCK


def idle_baseline(secs=2.0):
    """Busy CPU seconds per second of a machine doing nothing of ours, measured once."""
    if _BASELINE["per_s"] is None:
        t0, b0 = time.monotonic(), busy_seconds()
        time.sleep(secs)
        t1, b1 = time.monotonic(), busy_seconds()
        _BASELINE["per_s"] = max(0.0, (b1 - b0) / (t1 - t0))
        _BASELINE["secs"] = secs
    return _BASELINE["per_s"]


def baseline_info():
    return {"idle_busy_cpu_per_s": _BASELINE["per_s"], "measured_for_s": _BASELINE["secs"]}


def measured(servers, cmd, timeout, env=None, cpu=procs.LOAD_CPU):
    """Like procs.measured, plus the machine's busy CPU seconds over the run minus the idle
    baseline: returns (server CPU s, system CPU s, load stdout)."""
    base = idle_baseline()
    before = sum(s.cpu() for s in servers)
    t0, b0 = time.monotonic(), busy_seconds()
    out = procs.run_load(cmd, timeout, env, cpu=cpu)
    t1, b1 = time.monotonic(), busy_seconds()
    after = sum(s.cpu() for s in servers)
    return after - before, max(0.0, (b1 - b0) - base * (t1 - t0)), out
