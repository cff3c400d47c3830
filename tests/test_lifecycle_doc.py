"""docs/lifecycle.md shows TRANSITIONS as they are: tools/lifecycle_doc.py writes its diagram
and table, and this fails when someone changed the table without running it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobledger.schemas.lifecycle import NEW, TRANSITIONS
from tools.lifecycle_doc import BEGIN, DOC, END, main, mermaid, with_generated


def test_docs_lifecycle_md_holds_the_current_diagram_and_table() -> None:
    text = DOC.read_text()
    assert with_generated(text) == text, "docs/lifecycle.md is stale: run tools/lifecycle_doc.py"


def test_the_diagram_draws_every_move_of_the_table() -> None:
    drawn = {line.split(":")[0].strip() for line in mermaid() if "-->" in line}
    moves = {f"{'[*]' if src is NEW else src} --> {dest}"
             for (src, _), dests in TRANSITIONS.items() for dest in dests}
    assert drawn == moves


def test_check_fails_on_a_stale_page_and_rewriting_makes_it_current(tmp_path: Path) -> None:
    page = tmp_path / "lifecycle.md"
    page.write_text(DOC.read_text().replace("    scheduled --> pending: JobDue\n", ""))
    assert main(["--check", str(page)]) == 1
    assert main([str(page)]) == 0
    assert main(["--check", str(page)]) == 0
    assert page.read_text() == DOC.read_text()


def test_a_page_without_the_markers_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "lifecycle.md"
    page.write_text("# Job lifecycle\n")
    assert main(["--check", str(page)]) == 2
    assert BEGIN in capsys.readouterr().err and END in DOC.read_text()
