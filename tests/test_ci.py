"""CI (.ci/run) runs the README's test command as written, and that command lints and
type-checks the code before it runs the tests (CONTRIBUTING.md, "Checks")."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    blocks = re.findall(r"```\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    (command,) = [block for block in blocks if "pytest" in block]
    return str(command)


def test_ci_runs_the_readme_test_command() -> None:
    assert readme_test_command() in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_test_command_lints_and_type_checks_before_the_tests() -> None:
    steps = [step.strip() for step in readme_test_command().split("&&")]
    tests = steps.index("python -m pytest -q")
    assert steps.index("ruff check .") < tests
    assert steps.index("bash tools/typecheck.sh") < tests
