"""Run the benchmark suite of issue 6: jobledger and its peers side by side, one command.

    python -m bench                        # everything, 3 runs each; bench/results/suite.{json,md}
    python -m bench --quick                # small sizes, 1 run: a smoke test
    python -m bench --only drain latency200 --peers celery huey --runs 5

Runs are interleaved (run 1 of every system, then run 2, ...) so that a machine whose speed
drifts affects every system alike and the ratios hold. Only complete full runs write
bench/results/; --quick, --only and --peers write bench/results/scratch/ (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import machine
from .env import Env, Sizes
from .kafka_mode import KafkaMode
from .ledger import EmbeddedMode, JobledgerSystem
from .measure import summary
from .peers import PEERS, load_peers
from .profile_drain import profile_drain
from .redis_server import RedisServer
from .registry import BY_NAME, WORKLOADS, Workload, title
from .report import OK, markdown
from .system import NotMeasured, System

RESULTS = Path(__file__).parent / "results"
PROFILE = "profile"
JOBLEDGER_SLOTS = 64  # its drain's fastest setting in the sweep (docs/performance.md)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one run: a smoke test")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[*BY_NAME, PROFILE],
                        help=f"workloads to run: {', '.join([*BY_NAME, PROFILE])}")
    parser.add_argument("--peers", nargs="*", metavar="PEER", choices=list(PEERS),
                        help="peers to run (default all; none: --peers with no name)")
    parser.add_argument("--slots", type=int,
                        help="worker concurrency of every system (default: jobledger 64 slots,"
                             " each peer its fastest setting, see docs/performance.md)")
    parser.add_argument("--shared", metavar="TEXT",
                        help="say in suite.md that the machine was shared, and how")
    parser.add_argument("--out", type=Path, help="where to write suite.json and suite.md")
    args = parser.parse_args(argv)
    for name in ("runs", "slots"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


class Collector:
    """Values of every run, per workload, system and metric, turned into cells at the end."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], dict[str, list[float]]] = {}
        self.details: dict[tuple[str, str], list[Any]] = {}
        self.failures: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def add(self, workload: str, system: str, measured: dict[str, Any]) -> None:
        measured = dict(measured)
        self.details.setdefault((workload, system), []).append(measured.pop("details", None))
        values = self.values.setdefault((workload, system), {})
        for metric, value in measured.items():
            values.setdefault(metric, []).append(float(value))

    def fail(self, workload: str, system: str, why: str, status: str = "failed") -> None:
        """status: "failed" (an error), or "not_measured" (a stub, or missing here)."""
        self.failures.setdefault((workload, system), []).append((status, why))

    def not_measured(self, workload: str, system: str) -> bool:
        failures = self.failures.get((workload, system), [])
        return any(status == "not_measured" for status, _ in failures)

    def cells(self, workload: Workload, system: System) -> dict[str, dict[str, Any]]:
        key = (workload.name, system.key)
        values = self.values.get(key, {})
        failures = self.failures.get(key, [])
        out = {}
        for metric in workload.metrics:
            if metric.key in values:
                out[metric.key] = {"status": OK, **summary(values[metric.key])}
            elif failures:
                status, why = failures[-1]
                out[metric.key] = {"status": status, "why": why}
            elif key in self.details:  # it ran, and has no such figure (e.g. no batch API)
                out[metric.key] = {"status": "n/a", "why": metric.missing}
        return out


async def run_one(workload: Workload, system: System, env: Env, collector: Collector) -> str:
    try:
        measured = await asyncio.wait_for(workload.run(system, env), workload.timeout)
    except NotMeasured as exc:
        collector.fail(workload.name, system.key, str(exc), "not_measured")
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others' figures
        traceback.print_exc()
        why = f"failed: {type(exc).__name__}: {exc}"
        collector.fail(workload.name, system.key, why)
        return why
    collector.add(workload.name, system.key, measured)
    return ", ".join(f"{k}={v:,.1f}" for k, v in measured.items() if k != "details")


async def suite(args: argparse.Namespace, sizes: Sizes, runs: int) -> dict[str, Any]:
    started, when = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    load_start, tree = machine.load(), machine.tree()  # others may commit while it runs
    names = args.only or [w.name for w in WORKLOADS] + [PROFILE]
    workloads = [BY_NAME[n] for n in names if n != PROFILE]
    env = Env(sizes, Path(tempfile.mkdtemp(prefix="jobledger-bench-")))
    embedded = EmbeddedMode(sizes.slots or JOBLEDGER_SLOTS)
    kafka = KafkaMode()
    ledger: list[System] = [JobledgerSystem(embedded), JobledgerSystem(kafka)]
    peers: list[System] = []
    collector = Collector()
    extra: dict[str, Any] = {}
    try:
        if any(w.peers for w in workloads) and args.peers != []:
            if RedisServer.missing() is None:
                env.redis = RedisServer(env.tmp)
                await env.redis.wait_ready()
            os.environ.update({k: v for k, v in env.child_env().items() if k.startswith("BENCH_")})
            peers = load_peers(args.peers, sizes.slots)
        for workload in workloads:
            systems = ledger + (peers if workload.peers else [])
            for run in range(runs):
                for system in systems:
                    if system.unavailable() is not None:
                        if run == 0:
                            collector.fail(workload.name, system.key, system.unavailable() or "",
                                          "not_measured")
                        continue
                    if collector.not_measured(workload.name, system.key):
                        continue  # a stub says so once
                    said = await run_one(workload, system, env, collector)
                    print(f"[{time.monotonic() - started:6.0f} s] {workload.name}"
                          f" run {run + 1}/{runs} {system.key}: {said}", flush=True)
        if PROFILE in names:
            out = (args.out or RESULTS) / "drain_profile.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            extra["profile"] = await profile_drain(embedded, env, out)
            print(f"[{time.monotonic() - started:6.0f} s] profile: {extra['profile']}", flush=True)
        extra["fixtures"] = {k: (v.describe() if hasattr(v, "describe") else v)
                             for k, v in env.cache.items()}
    finally:
        for mode in (embedded, kafka):
            mode.close()
        if env.redis is not None:
            env.redis.stop()
        shutil.rmtree(env.tmp, ignore_errors=True)
    systems = ledger + peers
    return {
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "when": when, "duration_s": round(time.monotonic() - started), "quick": args.quick,
        "runs": runs, "sizes": vars(sizes), "machine": machine.machine(),
        "load_start": load_start, "load_end": machine.load(), "shared_machine": args.shared,
        "software": {**machine.software(), "packages": _versions(systems)}, "tree": tree,
        "systems": {s.key: {"label": s.label, "jobledger": s in ledger, "settings": s.settings(),
                            "unavailable": s.unavailable()} for s in systems},
        "workloads": [_workload(w, ledger, peers, sizes, collector) for w in workloads],
        **extra,
    }


def _versions(systems: list[System]) -> dict[str, str]:
    out: dict[str, str] = {}
    for system in systems:
        if system.unavailable() is None:
            out.update(system.versions())
    return dict(sorted(out.items()))


def _workload(workload: Workload, ledger: list[System], peers: list[System], sizes: Sizes,
              collector: Collector) -> dict[str, Any]:
    chosen = ledger + (peers if workload.peers else [])
    results = {s.key: collector.cells(workload, s) for s in chosen}
    main = results[workload.judged_on or ledger[0].key]
    metrics = []
    for metric in workload.metrics:
        entry: dict[str, Any] = {"key": metric.key, "title": title(metric, sizes),
                                 "unit": metric.unit, "better": metric.better}
        cell = main.get(metric.key)
        if metric.target is not None:
            medians = {k: c[metric.key]["median"] for k, c in results.items()
                       if c.get(metric.key, {}).get("status") == OK}
            measured = cell and cell["status"] == OK
            met = metric.target.met(cell["median"], medians) if measured else None
            entry["target"] = {"text": metric.target.text, "met": met}
        metrics.append(entry)
    details = {s.key: collector.details.get((workload.name, s.key)) for s in chosen}
    return {"name": workload.name, "metrics": metrics, "results": results,
            "details": {k: v for k, v in details.items() if v}}


def _stop_on_sigterm() -> None:
    """SIGTERM (`timeout`, kill) unwinds like Ctrl-C, so the processes started are stopped."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_sigterm()
    sizes = Sizes().quick() if args.quick else Sizes()
    if args.slots is not None:
        sizes = replace(sizes, slots=args.slots)
    runs = args.runs or (1 if args.quick else 3)
    partial = (args.quick or args.only is not None or args.peers is not None
               or args.slots is not None)
    out = args.out or (RESULTS / "scratch" if partial else RESULTS)
    args.out = out
    try:
        import uvloop

        result = uvloop.run(suite(args, sizes, runs))
    except ImportError:
        result = asyncio.run(suite(args, sizes, runs))
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (out / "suite.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out / 'suite.json'} and {out / 'suite.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
