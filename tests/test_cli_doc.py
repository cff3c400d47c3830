"""docs/api.md shows each command's --help as the CLI prints it: tools/cli_doc.py writes
those blocks, and this fails when a flag or its help changed without running it."""

from __future__ import annotations

from pathlib import Path

from tools.cli_doc import DOC, main, with_generated


def test_docs_api_md_holds_the_current_help_of_every_documented_command() -> None:
    text = DOC.read_text()
    assert with_generated(text) == text, "docs/api.md is stale: run python -m tools.cli_doc"


def test_every_command_of_the_top_level_help_is_documented() -> None:
    from jobledger.services.cli.main import build_parser

    text = DOC.read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    local = {"serve", "submit", "status", "replay", "schema"}  # worker, api: kafka.md
    assert local <= set(sub.choices)
    for command in local:
        assert f"tools/cli_doc.py: jobledger {command} --help -->" in text


def test_check_fails_on_a_stale_block_and_rewriting_makes_it_current(tmp_path: Path) -> None:
    page = tmp_path / "api.md"
    page.write_text(DOC.read_text().replace("--payload PAYLOAD ", "--payload P ", 1))
    assert main(["--check", str(page)]) == 1
    assert main([str(page)]) == 0
    assert page.read_text() == DOC.read_text()
