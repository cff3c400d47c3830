"""What the figures were measured on: the machine, its load, the software and the tree."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
import sys
from typing import Any

import psutil

from .env import ROOT


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": psutil.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def load() -> dict[str, Any]:
    """The load average: above ~0.3 on an idle machine, someone else is using it."""
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1_5_15": [round(one, 2), round(five, 2), round(fifteen, 2)]}


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def software() -> dict[str, Any]:
    wrk = _run("wrk", "-v").splitlines()
    return {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "redis_server": _run("redis-server", "--version").split(" v=")[-1].split()[0]
        if shutil.which("redis-server") else "not installed",
        "wrk": " ".join(wrk[0].split()[:2]) if wrk else "not installed",
    }


def tree() -> dict[str, Any]:
    """The commit measured (at the start of the run), and how many files outside bench/
    differed from it."""
    dirty = [line for line in _run("git", "status", "--porcelain").splitlines()
             if not line[3:].startswith("bench/")]
    return {"commit": _run("git", "rev-parse", "HEAD"),
            "uncommitted_files_outside_bench": len(dirty)}
