"""The results table of bench/compare: rows (medians, ratio, target verdict, the floor relay's
figure and sluice/floor, per-round values), printed, as JSON rows and as markdown for
docs/BENCHMARKS.md. No measuring here; the figure list and target peers come from compare.
"""

import statistics

from . import scen_scale

# sluice with `forward = "sockmap"` (issue #18): its targets are on system-wide CPU, against
# the same HAProxy the sluice targets use.
SOCKMAP_TARGETS = {(2, "sys_us_per_req"): 0.6, (3, "sys_s_per_gb"): 0.5}
SUBJECTS = ("sluice", "sluice-sockmap")


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _ratio(a, b):
    return a / b if a is not None and b else None


def _row(scen, impls, label, unit, subject, peer, key, target, lower):
    sv = impls.get(subject, {}).get(key, [])
    pv = impls.get(peer, {}).get(key, [])
    fv = impls.get("floor", {}).get(key, [])
    s, p, f = median(sv), median(pv), median(fv)
    if s is None and p is None:
        return None
    ratio = _ratio(s, p)
    verdict = ""
    if target is not None and ratio is not None:
        ok = ratio <= target if lower else ratio >= target
        verdict = f"{'<=' if lower else '>='} {target} {'ok' if ok else 'MISSED'}"
    elif target is not None:
        verdict = f"{'<=' if lower else '>='} {target} (no figure)"
    per_round = [_ratio(a, b) for a, b in zip(sv, pv)]  # A/B in the same round
    return {"scen": scen, "figure": label, "key": key, "unit": unit, "subject": subject,
            "value": s, "peer": peer, "peer_value": p, "ratio": ratio, "target": target,
            "lower_is_better": lower, "verdict": verdict, "floor": f,
            "per_floor": _ratio(s, f), "rounds": {subject: sv, peer: pv, "floor": fv},
            "ratio_rounds": per_round}


def rows(results, only, figures, target_peers):
    """results[scenario][impl][figure] = [values per round] -> table rows (dicts)."""
    out = []
    for scen, key, label, unit, target, lower in figures:
        if scen not in only or scen not in results:
            continue
        impls = results[scen]
        peers = [i for i in impls if i not in SUBJECTS and i != "floor"]
        for peer in peers:
            tgt = target if peer in target_peers(scen) else None
            r = _row(scen, impls, label, unit, "sluice", peer, key, tgt, lower)
            if r is not None:
                out.append(r)
        if "sluice-sockmap" in impls:
            sock = impls["sluice-sockmap"].get(key)
            for peer in [p for p in peers if p in target_peers(scen)]:
                if not sock and (scen, key) not in SOCKMAP_TARGETS:
                    continue  # skipped (not in this build): only its targets are shown
                r = _row(scen, impls, label, unit, "sluice-sockmap", peer, key,
                         SOCKMAP_TARGETS.get((scen, key)), lower)
                if r is not None:
                    out.append(r)
    if 16 in only and 16 in results:
        def make(label, unit, subject, peer, key, target, lower):
            return _row(16, results[16], label, unit, subject, peer, key, target, lower)
        out += scen_scale.rows(results[16], make)
    return out


def _cells(r):
    return (str(r["scen"]), r["figure"], r["unit"], r["subject"], fmt(r["value"]), r["peer"],
            fmt(r["peer_value"]), fmt(r["ratio"]), r["verdict"], fmt(r["floor"]),
            fmt(r["per_floor"]))


HEADER = ("#", "figure", "unit", "subject", "value", "peer", "peer value", "ratio", "target",
          "floor", "subject/floor")


def print_table(table):
    cells = [_cells(r) for r in table]
    widths = [max(len(c[i]) for c in cells + [HEADER]) for i in range(len(HEADER))]

    def line(c):
        return "  ".join(x.ljust(w) for x, w in zip(c, widths))
    print()
    print(line(HEADER))
    print(line(["-" * w for w in widths]))
    for c in cells:
        print(line(c))


def markdown(table, machine, args, baseline, failed=None):
    """The whole table as markdown, ready to paste into docs/BENCHMARKS.md."""
    m = machine
    out = [f"Machine: {m.get('cpus')} CPUs \"{m.get('cpu')}\", Linux {m.get('kernel')}, "
           f"{m.get('haproxy')}, {m.get('nginx')}; sluice {m.get('sluice_commit', '?')}; "
           f"{m.get('date')}.",
           "",
           f"`bench/compare --rounds {args['rounds']} --duration {args['duration']:g} "
           f"--only {','.join(map(str, args['only']))}`; medians of {args['rounds']} rounds, "
           "ratio = subject / peer (the medians'); round ratio = the median of each round's "
           "subject / peer, which cancels the machine's drift between rounds; per round: "
           "subject / peer (the two ran in the same round). "
           "System CPU = /proc/stat busy time of all CPUs minus the idle baseline "
           f"({fmt(baseline.get('idle_busy_cpu_per_s'))} CPU s per s); it includes the load "
           "generator and the backend; stack CPU = server + backend + load generator CPU plus "
           "irq/softirq. floor = bench/floor/floor.c (epoll + splice, PROXY v1).",
           ""]
    if baseline.get("idle_busy_cpu_per_s") is not None and not baseline.get("quiet"):
        out += ["**The machine was not quiet** (idle baseline above 0.2 CPU s per s): the "
                "system CPU figures are not usable from this run.", ""]
    for scen, why in sorted((failed or {}).items()):
        out += [f"Scenario {scen} FAILED: {why[-300:]}", ""]
    out += ["| # | figure | subject | value | peer | peer value | ratio | round ratio | target "
            "| floor | subject/floor | per round (subject / peer) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        unit = f" ({r['unit']})" if r["unit"] else ""
        sv, pv = r["rounds"][r["subject"]], r["rounds"][r["peer"]]
        rounds = ", ".join(f"{fmt(a)} / {fmt(b)}" for a, b in zip(sv, pv))
        round_ratio = median([x for x in r.get("ratio_rounds", []) if x is not None])
        out.append(f"| {r['scen']} | {r['figure']}{unit} | {r['subject']} | {fmt(r['value'])} "
                   f"| {r['peer']} | {fmt(r['peer_value'])} | {fmt(r['ratio'])} "
                   f"| {fmt(round_ratio)} "
                   f"| {r['verdict']} | {fmt(r['floor'])} | {fmt(r['per_floor'])} "
                   f"| {rounds} |")
    return "\n".join(out) + "\n"
