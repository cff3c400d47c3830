"""`jobledger completion bash|zsh|fish` (services/cli/completion.py): each script, loaded into
its shell, completes commands, subcommands and a flag's choices from the CLI's parser.
A shell that is not installed is skipped (bash always is)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobledger.services.cli.main import main


def script(shell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["completion", shell]) == 0
    path = tmp_path / f"jobledger.{shell}"
    path.write_text(capsys.readouterr().out)
    return path


def shell(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: the README's test command installs it (apt-get)"
    return found


def bash_complete(path: Path, *words: str) -> list[str]:
    line = " ".join(f'"{w}"' for w in words)
    program = (f"source {path}; COMP_WORDS=(jobledger {line}); COMP_CWORD={len(words)}; "
               'COMP_LINE="jobledger ${COMP_WORDS[*]:1}"; _shtab_jobledger; '
               'printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run([shell("bash"), "-c", program], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.split()


def test_bash_completes_commands_subcommands_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = script("bash", tmp_path, capsys)
    assert bash_complete(path, "sta") == ["status", "stats"]
    assert "cluster-status" in bash_complete(path, "")
    assert bash_complete(path, "schedules", "tr") == ["trigger"]
    assert set(bash_complete(path, "list", "--status", "")) == {
        "scheduled", "pending", "in_progress", "completed", "failed", "dead_letter",
        "cancelled"}
    assert "--from-file" in bash_complete(path, "submit", "--")


def test_fish_completes_commands_subcommands_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fish = shell("fish")
    path = script("fish", tmp_path, capsys)

    def complete(line: str) -> list[str]:
        done = subprocess.run([fish, "-c", f"source {path}; complete -C '{line}'"],
                              capture_output=True, text=True, timeout=30, check=True)
        return [row.split("\t")[0] for row in done.stdout.splitlines()]

    assert complete("jobledger sta") == ["stats", "status"]
    assert complete("jobledger schedules tr") == ["trigger"]
    assert "dead_letter" in complete("jobledger list --status ")
    assert complete("jobledger completion ") == ["bash", "fish", "zsh"]


def test_zsh_script_parses_and_names_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    zsh = shell("zsh")
    path = script("zsh", tmp_path, capsys)
    subprocess.run([zsh, "-n", str(path)], check=True, timeout=30)
    text = path.read_text()
    for command in ("submit", "list", "watch", "queue-depth", "cluster-status"):
        assert re.search(rf"^\s+{command}:'", text, re.M), command
        assert f"{command}) _arguments" in text
