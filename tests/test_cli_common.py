"""services/cli/common.py: the exit codes, one line per failure of a client call, and a
refused field named by its flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobledger.services.cli.audit import AUDIT_EXIT_CODES
from jobledger.services.cli.common import (
    EXIT_CODES,
    SERVER_EXIT_CODES,
    Exit,
    refusal_line,
    run_client,
)
from jobledger.services.cli.main import main
from jobledger.services.client.errors import ClientError, ServerUnreachable, WaitTimeout
from jobledger.services.write.producer import InvalidJob
from tests.support.builders import task_detail

DOCS = Path(__file__).parents[1] / "docs" / "api.md"


def fail_with(exc: Exception, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    async def go() -> None:
        raise exc

    code = run_client(go, {"delay_seconds": "--delay"})
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("exc", "code", "line"), [
    (ServerUnreachable(), Exit.UNREACHABLE, "error: cannot reach the server: no answer\n"),
    (WaitTimeout("t1", 2.5, task_detail("pending")), Exit.TIMEOUT,
     "error: timed out: task t1 is still pending after 2.5 s (it goes on running; "
     "see `jobledger status t1`)\n"),
    (ClientError(404, {"error": "no task t1", "code": "NOT_FOUND"}), Exit.FAILED,
     "error: no task t1 (NOT_FOUND)\n"),
    (ClientError(400, {"error": "Expected `float` >= 0.0 - at `$.delay_seconds`",
                       "code": "INVALID_ARGUMENT", "field": "delay_seconds"}),
     Exit.USAGE, "error: --delay: Expected `float` >= 0.0 (INVALID_ARGUMENT)\n"),
    (InvalidJob("payload is not JSON: nope", "payload"), Exit.USAGE,
     "error: payload is not JSON: nope (payload) (INVALID_ARGUMENT)\n"),
])
def test_each_failure_is_one_line_and_its_code(
    exc: Exception, code: Exit, line: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert fail_with(exc, capsys) == (code, line)


def test_a_field_named_first_becomes_the_flag() -> None:
    exc = InvalidJob("payload is 2000000 bytes; at most 1048576", "payload", "PAYLOAD_TOO_LARGE")
    assert refusal_line(exc, {"payload": "--payload"}) == (
        "--payload is 2000000 bytes; at most 1048576 (PAYLOAD_TOO_LARGE)")


def test_the_exit_codes_are_in_the_help_and_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    help_text = capsys.readouterr().out
    docs = DOCS.read_text()
    for line in EXIT_CODES.splitlines():
        assert line in help_text and line in docs
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    for line in SERVER_EXIT_CODES.splitlines():
        assert line in help_text and line in docs
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    help_text = capsys.readouterr().out
    for line in AUDIT_EXIT_CODES.splitlines():
        assert line in help_text and line in docs
    assert [int(code) for code in Exit] == [0, 1, 2, 3, 4, 5, 6]
