"""A fast subset of the fault-injection suite (bench/faults, issue 18), run as tests:
`pytest -m faults`. Each row starts real processes, injects its fault with real signals
and checks its figure from the log, at its --quick size (10-25 s each). CI runs these;
the whole table runs with `python -m bench.faults` (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults.rows import ROWS

pytestmark = [pytest.mark.faults, pytest.mark.slow]

QUICK_ROWS = ["R3", "R5", "R17", "R19", "R23", "R25"]  # the few whose quick size takes seconds


@pytest.mark.parametrize("row", QUICK_ROWS)
def test_a_quick_row_passes(row: str, tmp_path: Path) -> None:
    result = ROWS[row](tmp_path, True)
    assert result.ok, (result.row, result.figures, result.notes)
