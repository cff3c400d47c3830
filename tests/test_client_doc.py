"""Every Python block of docs/client.md runs as written, the way tests/test_readme.py runs
the README's: the `# emails.py` block is saved as that file, a `jobledger serve --demo
--app emails:app` starts beside it, and each other block runs as a script against it
(127.0.0.1:8080 rewritten to the server's port) and must exit 0."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.procs import ServerProcess
from tests.test_readme import FENCE, Readme

DOC = Path(__file__).resolve().parent.parent / "docs" / "client.md"
pytestmark = pytest.mark.slow


def python_blocks() -> list[str]:
    return [m[2] for m in FENCE.finditer(DOC.read_text()) if m[1] == "python"]


def test_the_page_holds_the_handler_module_and_scripts() -> None:
    blocks = python_blocks()
    assert blocks[0].startswith("# emails.py\n") and len(blocks) >= 5


def test_every_python_block_of_the_client_page_runs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for number, text in enumerate(blocks[:1]):  # the module, before the server imports it
        Readme(tmp_path, 0, "", env).python(text, number)
    monkeypatch.chdir(tmp_path)  # --app emails:app is found in the current folder
    server = ServerProcess(tmp_path / "j.db", "--demo", "--app", "emails:app")
    try:
        server.wait_healthy()
        readme = Readme(tmp_path, server.port, "", env)
        for number, text in enumerate(blocks[1:], start=1):
            readme.python(text, number)
    finally:
        server.stop()
