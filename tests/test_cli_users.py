"""`jobledger users` against a real server with auth on: register (password on stdin),
login (the token last), the token used as an API key, list, permissions, remove; the
signing secret's file made with mode 0600; neither the password nor the secret printed."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobledger.services.cli.auth import warn_without_shared_secret
from jobledger.services.security.tokens import SECRET_FILE
from tests.support.auth import ADMIN_KEY, PASSWORD, auth_on
from tests.support.procs import ServerProcess
from tests.test_cli_startup import JOBLEDGER, _env, assert_one_line

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "j.db", "--demo", "--auth", "on",
                            env={"JOBLEDGER_ADMIN_KEY": ADMIN_KEY})
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def users(server: ServerProcess, *args: str, key: str = ADMIN_KEY,
          stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(JOBLEDGER), "users", *args, "--server", server.url],
                          env={**_env(), "JOBLEDGER_API_KEY": key}, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_users_register_sign_in_and_are_managed_from_the_command_line(
    server: ServerProcess, tmp_path: Path,
) -> None:
    made = users(server, "register", "ana", "--permissions", "read_tasks", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("registered ana (") and "read_tasks" in made.stdout

    signed_in = users(server, "login", "ana", key="", stdin=PASSWORD + "\n")
    assert signed_in.returncode == 0, signed_in.stderr
    token = signed_in.stdout.splitlines()[-1]
    assert token.startswith("eyJ") and "expires in 900 s" in signed_in.stdout
    assert server.http.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"}
                           ).status_code == 200
    assert_one_line(users(server, "list", key=token), 1, "FORBIDDEN", "lacks the admin")

    listed = users(server, "list")
    assert listed.returncode == 0 and "ana" in listed.stdout and "read_tasks" in listed.stdout
    changed = users(server, "permissions", "ana", "--permissions", "submit_tasks")
    assert (changed.returncode, changed.stdout) == (0, "ana: submit_tasks\n")
    removed = users(server, "remove", "ana")
    assert removed.returncode == 0 and removed.stdout.startswith("removed ana")
    assert server.http.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"}
                           ).status_code == 401

    secret_file = tmp_path / SECRET_FILE
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    printed = server.output() + made.stdout + made.stderr + signed_in.stderr
    assert PASSWORD not in printed and secret_file.read_text().strip() not in printed


def test_a_bad_password_is_one_line_naming_it(server: ServerProcess) -> None:
    short = users(server, "register", "ana", stdin="too short\n")
    assert_one_line(short, 2, "password")
    assert "too short" not in short.stderr
    assert_one_line(users(server, "register", "ana", stdin=""), 2, "no password given")


def test_a_wrong_password_is_one_line_that_offers_no_key(server: ServerProcess) -> None:
    assert users(server, "register", "ana", stdin=PASSWORD + "\n").returncode == 0
    refused = users(server, "login", "ana", key="", stdin="not the password at all\n")
    line = assert_one_line(refused, 1, "wrong username or password")
    assert "--api-key" not in line


def test_an_api_node_without_a_shared_secret_says_so(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    warn_without_shared_secret(auth_on(tmp_path, jwt_secret=None))
    assert "JOBLEDGER_JWT_SECRET is not set" in capsys.readouterr().err
    warn_without_shared_secret(auth_on(tmp_path))
    assert capsys.readouterr().err == ""
