"""Figures from benchmarks live in docs/performance.md ("Figures behind the code"), not in
the code: a comment or docstring says why and points there. This keeps the pointers and
the table's rows in step, both ways, so that the table is where a figure is kept current."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "Figures behind the code"
SOURCES = ("schemas", "projections", "services", "api")


def _table_files() -> set[str]:
    text = (ROOT / "docs" / "performance.md").read_text()
    assert f"\n## {SECTION}\n" in text, f"docs/performance.md has no section {SECTION!r}"
    section = text.split(f"\n## {SECTION}\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| `([\w/.]+\.py)`", section, re.MULTILINE)}


def _pointing_files() -> set[str]:
    # The words may be wrapped, in a docstring or across comment lines.
    words = r"\s*(?:#\s*)?".join(["docs/performance\\.md,", '"Figures', "behind", "the", 'code"'])
    pointer = re.compile(words)
    return {
        str(path.relative_to(ROOT)) for folder in SOURCES for path in (ROOT / folder).rglob("*.py")
        if pointer.search(path.read_text())
    }


def test_every_file_the_table_names_points_to_it() -> None:
    missing = _table_files() - _pointing_files()
    assert not missing, f"rows of docs/performance.md whose file does not point there: {missing}"


def test_every_file_that_points_to_the_table_has_a_row() -> None:
    missing = _pointing_files() - _table_files()
    assert not missing, f"point to docs/performance.md's {SECTION!r} without a row: {missing}"
