"""`python -m bench.faults [--rows R1,R3,...] [--quick] [--soak-seconds N]`: run the rows,
write bench/results/faults.md and faults.json (or --out DIR)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.env import ROOT

from .common import Result
from .rows import ROWS


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"rows to run, comma-separated (default all: {','.join(ROWS)})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a few seconds to a minute a row")
    parser.add_argument("--soak-seconds", type=float, default=None,
                        help="R26's duration (default 600, 60 with --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="where faults.md and faults.json go; the rows of an earlier "
                             "run there that this one does not run are kept")
    args = parser.parse_args(argv)
    args.rows = [r.strip().upper() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown row {', '.join(unknown)} (known: {', '.join(ROWS)})")
    if args.soak_seconds is not None:
        os.environ["JOBLEDGER_FAULTS_SOAK_SECONDS"] = str(args.soak_seconds)
    return args


def run_row(name: str, quick: bool) -> Result:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as where:
        try:
            result = ROWS[name](Path(where), quick)
        except Exception as error:  # noqa: BLE001 - a row that cannot run is reported, not fatal
            result = Result(name, "", {}, ok=False,
                            notes=[f"did not run to the end: {error!r}",
                                   traceback.format_exc(limit=3)])
    result.seconds = round(time.monotonic() - started, 1)
    result.notes.insert(0, f"run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
                           f"{' --quick' if quick else ''}, load average "
                           f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{result.row}: {'ok' if result.ok else 'FAILED'} in {result.seconds} s "
          f"{json.dumps(result.figures)}", flush=True)
    return result


def write(results: list[Result], out: Path) -> None:
    """faults.json and faults.md in out: this run's rows, and an earlier run's others."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {r.row: asdict(r) for r in results}
    earlier = out / "faults.json"
    if earlier.exists():
        for row in json.loads(earlier.read_text()).get("rows", []):
            rows.setdefault(row["row"], row)
    ordered = [rows[name] for name in ROWS if name in rows]
    meta = {"cpus": os.cpu_count(), "command": "python -m bench.faults"}
    earlier.write_text(json.dumps({"meta": meta, "rows": ordered}, indent=1) + "\n")
    lines = ["# Fault-injection suite (issue 18)", "",
             f"Command: `python -m bench.faults [--rows ...] [--quick]`, on {meta['cpus']} "
             "CPUs shared with other work (each row says when it ran and the load average "
             "then). What each row does and found: docs/reliability.md, \"Fault-injection "
             "suite\".", "",
             "| row | fault | figures | ok | seconds | notes |", "|---|---|---|---|---|---|"]
    for r in ordered:
        figures = "; ".join(f"{k}: {v}" for k, v in r["figures"].items()) or "-"
        notes = " ".join(n.splitlines()[0] for n in r["notes"])
        lines.append(f"| {r['row']} | {r['fault']} | {figures} | "
                     f"{'yes' if r['ok'] else '**no**'} | {r['seconds']} | {notes} |")
    (out / "faults.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = [run_row(name, args.quick) for name in args.rows]
    write(results, args.out)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
