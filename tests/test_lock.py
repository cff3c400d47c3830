"""The locks in requirements/ agree with pyproject.toml.

Every requirement that pyproject.toml declares for a lock's extras (runtime ones included,
and the extras a self-reference such as ``jobledger[kafka]`` pulls in) must be pinned in
that lock at a version the declared range allows. A range changed without refreshing the
lock (requirements/compile.sh) fails here, before it can hide behind an older install.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {"test.lock": ("test",), "bench.lock": ("test", "bench")}
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    """The runtime requirements plus those of ``extras``, self-references expanded."""
    project = _project()
    own, wanted, seen = canonicalize_name(project["name"]), list(extras), set()
    found = [Requirement(text) for text in project["dependencies"]]
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(req.name) == own:
                wanted.extend(req.extras)
            else:
                found.append(req)
    env = {"python_version": "3.11", "extra": ""}
    return [req for req in found if req.marker is None or req.marker.evaluate(env)]


def pins(lock: str) -> dict[str, str]:
    lines = (ROOT / "requirements" / lock).read_text().splitlines()
    return {canonicalize_name(m[1]): m[2] for m in map(PIN.match, lines) if m}


def disagreements(pinned: dict[str, str], declared: list[Requirement]) -> list[str]:
    problems = []
    for req in declared:
        version = pinned.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is declared but not locked")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in the lock is outside {req}")
    return problems


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_requirement_is_pinned_in_range(lock: str) -> None:
    problems = disagreements(pins(lock), declared(LOCKS[lock]))
    assert not problems, f"requirements/{lock}: run requirements/compile.sh\n" + "\n".join(
        problems
    )


def test_bench_lock_keeps_the_test_locks_versions() -> None:
    test, bench = pins("test.lock"), pins("bench.lock")
    differ = {name: (v, bench[name]) for name, v in test.items() if bench.get(name) != v}
    assert not differ, f"bench.lock moved test.lock's pins: {differ}"


def test_the_check_names_a_pin_out_of_range_and_a_missing_one() -> None:
    pinned = {"pytest": "9.2.0", "httpx": "0.28.1"}
    wanted = [Requirement("pytest>=8,<9.2"), Requirement("httpx>=0.27"), Requirement("ruff")]
    assert disagreements(pinned, wanted) == [
        "pytest==9.2.0 in the lock is outside pytest<9.2,>=8",
        "ruff is declared but not locked",
    ]
