"""suite.md: one table, a row per figure, a column per system with jobledger/peer ratios."""

from __future__ import annotations

from typing import Any

OK = "ok"


def cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    if cell["status"] != OK:
        return cell["why"].split(":")[0]
    return f"{_num(cell['median'])} ({_num(cell['min'])}–{_num(cell['max'])})"


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def ratio(mine: dict[str, Any] | None, peer: dict[str, Any] | None) -> str:
    if not mine or not peer or mine["status"] != OK or peer["status"] != OK or not peer["median"]:
        return ""
    return f"{mine['median'] / peer['median']:.2f}×"


def markdown(result: dict[str, Any]) -> str:
    systems = result["systems"]
    ledger = [k for k, s in systems.items() if s["jobledger"]]
    peers = [k for k, s in systems.items() if not s["jobledger"]]
    main = ledger[0]
    head = ["figure", "unit", *(systems[k]["label"] for k in ledger)]
    for peer in peers:
        head += [systems[peer]["label"], f"{systems[main]['label'].split()[0]}/{peer}"]
    head.append("target")
    lines = [_intro(result), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: dict[str, int] = {}
    for workload in result["workloads"]:
        for metric in workload["metrics"]:
            cells = {k: workload["results"].get(k, {}).get(metric["key"]) for k in systems}
            row = [metric["title"], metric["unit"]]
            row += [_noted(cells[k], notes) for k in ledger]
            for peer in peers:
                row += [_noted(cells[peer], notes), ratio(cells[main], cells[peer])]
            row.append(_target(metric))
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", *_legend(result), *(f"[{n}] {why}" for why, n in notes.items())]
    return "\n".join(lines).rstrip() + "\n"


def _noted(cell: dict[str, Any] | None, notes: dict[str, int]) -> str:
    text = cell_text(cell)
    if cell is not None and cell["status"] != OK:
        number = notes.setdefault(cell["why"], len(notes) + 1)
        text = f"{text} [{number}]"
    return text


def _target(metric: dict[str, Any]) -> str:
    target = metric.get("target")
    if not target:
        return ""
    mark = {True: " ✓ met", False: " ✗ missed", None: ""}[target["met"]]
    return target["text"] + mark


def _intro(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["software"]
    kind = "QUICK run (small sizes; not for comparison)" if r["quick"] else "Full run"
    shared = r.get("shared_machine")
    lines = [
        (f"{kind} of `{r['command']}`, {r['when']}, {r['duration_s'] / 60:.1f} minutes; "
         f"each figure is the median of {r['runs']} run(s), (min–max) beside it."),
        "",
        (f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs ({m['physical_cores']} "
         f"cores), {m['ram_gb']} GB RAM, Linux {m['kernel']}. Python {s['python']}, SQLite "
         f"{s['sqlite']}, redis-server {s['redis_server']}, {s['wrk']}. Load average at start "
         f"{r['load_start']['loadavg_1_5_15']}, at end {r['load_end']['loadavg_1_5_15']}."),
        (f"Tree: commit {r['tree']['commit'][:10]} at the start, "
         f"{r['tree']['uncommitted_files_outside_bench']} uncommitted files outside bench/."),
    ]
    if shared:
        lines += ["", f"**Shared machine:** {shared}"]
    return "\n".join(lines)


def _legend(r: dict[str, Any]) -> list[str]:
    out = [("Ratios are jobledger (embedded) / peer, medians: above 1 is better for jobledger "
            "on throughputs, below 1 is better on latencies and memory."),
           "Settings of each system (worker concurrency, pool, durability):", ""]
    for system in r["systems"].values():
        settings = "; ".join(f"{k}: {v}" for k, v in system["settings"].items())
        out.append(f"- **{system['label']}** — {settings or '-'}")
    out.append("")
    return out
