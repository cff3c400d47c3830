"""Auth modes and the first admin key: the default by bind address, the refusal of auth off
on an address others reach, JOBLEDGER_ADMIN_KEY, the admin.key file of a first start, and
the CLI clients that pick it up on the same machine."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobledger.api.app import create_app, serving
from jobledger.schemas import SECURITY, KeyCreated, decode
from jobledger.services.cli.auth import api_key_of
from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.bootstrap import (
    ADMIN_KEY_FILE,
    SecuritySettings,
    admin_key_id,
    auth_enabled,
    is_loopback,
    read_key_file,
    write_key_file,
)
from tests.support.api_harness import api_client, handlers
from tests.support.auth import ADMIN_KEY, auth_on, bearer
from tests.support.harness import NodeFactory
from tests.support.procs import ServerProcess, poll
from tests.test_cli_startup import JOBLEDGER, _env, assert_one_line, jobledger


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.20", False), ("example.com", False),
])
def test_only_loopback_addresses_count_as_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_auth_is_off_by_default_on_loopback_only_and_off_elsewhere_needs_insecure() -> None:
    assert auth_enabled(None, "127.0.0.1", False) is False
    assert auth_enabled(None, "0.0.0.0", False) is True
    assert auth_enabled("on", "127.0.0.1", False) is True
    assert auth_enabled("off", "127.0.0.1", False) is False
    assert auth_enabled("off", "0.0.0.0", True) is False
    with pytest.raises(ValueError, match=r"--auth off with --host 0\.0\.0\.0.*--insecure-no-auth"):
        auth_enabled("off", "0.0.0.0", False)


def test_a_short_admin_key_is_refused_and_the_key_is_never_in_the_settings_repr() -> None:
    with pytest.raises(ValueError, match="JOBLEDGER_ADMIN_KEY: give at least 24 characters"):
        SecuritySettings(enabled=True, admin_key="hunter2")
    assert ADMIN_KEY not in repr(SecuritySettings(enabled=True, admin_key=ADMIN_KEY))


def test_the_key_file_is_readable_by_its_owner_only_from_the_start(tmp_path: Path) -> None:
    before = os.umask(0)  # even with a umask that lets everyone read new files
    try:
        write_key_file(tmp_path / ADMIN_KEY_FILE, "jl_first")
        write_key_file(tmp_path / ADMIN_KEY_FILE, "jl_second")
    finally:
        os.umask(before)
    mode = stat.S_IMODE((tmp_path / ADMIN_KEY_FILE).stat().st_mode)
    assert mode == 0o600
    assert read_key_file(tmp_path / ADMIN_KEY_FILE) == "jl_second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [ADMIN_KEY_FILE]


def _client_args(server: str, api_key: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(server=server, api_key=api_key)


def test_a_client_takes_the_key_file_for_a_server_on_this_machine_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JOBLEDGER_DB", raising=False)
    monkeypatch.delenv("JOBLEDGER_VIEWS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert api_key_of(_client_args("http://127.0.0.1:8080")) is None
    write_key_file(tmp_path / ADMIN_KEY_FILE, "jl_fromfile")
    assert api_key_of(_client_args("127.0.0.1:8080")) == "jl_fromfile"
    assert api_key_of(_client_args("http://localhost:9000")) == "jl_fromfile"
    assert api_key_of(_client_args("http://10.0.0.5:8080")) is None  # never sent away
    assert api_key_of(_client_args("http://127.0.0.1:8080", "jl_given")) == "jl_given"
    # The folder a server's JOBLEDGER_DB names comes first.
    data = tmp_path / "data"
    data.mkdir()
    write_key_file(data / ADMIN_KEY_FILE, "jl_datadir")
    monkeypatch.setenv("JOBLEDGER_DB", str(data / "jobledger.db"))
    assert api_key_of(_client_args("http://127.0.0.1:8080")) == "jl_datadir"


# -- the first admin key, in process ---------------------------------------------------------


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)


async def _key_events(node: EmbeddedNode) -> list[KeyCreated]:
    records = await node.backend.topic(SECURITY).read(0, 0, limit=100)
    return [e for r in records if isinstance(e := decode(r.value).event, KeyCreated)]


async def _start_notes(node: EmbeddedNode, settings: SecuritySettings) -> list[str]:
    """Serve the node with these settings once; the lines start-up adds to the banner."""
    app = create_app(lambda: node, security=settings)
    async with serving(app, node):
        return list(app.state.security.notes)


async def test_a_first_start_with_auth_on_writes_an_admin_key_file_once(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    settings = auth_on(tmp_path, admin_key=None)
    (note,) = await _start_notes(node, settings)
    key = read_key_file(tmp_path / ADMIN_KEY_FILE)
    assert key is not None and key.startswith("jl_")
    assert str((tmp_path / ADMIN_KEY_FILE).resolve()) in note and key not in note
    assert stat.S_IMODE((tmp_path / ADMIN_KEY_FILE).stat().st_mode) == 0o600
    async with api_client(node, settings) as client:
        assert (await client.get("/api/v1/keys", headers=bearer(key))).status_code == 200
    # An admin exists now: the next start makes none and leaves the file alone.
    assert await _start_notes(node, settings) == []
    assert read_key_file(tmp_path / ADMIN_KEY_FILE) == key
    assert [e.name for e in await _key_events(node)] == ["admin (first start)"]


async def test_with_auth_off_no_key_is_made(node: EmbeddedNode, tmp_path: Path) -> None:
    assert await _start_notes(node, SecuritySettings(data_dir=tmp_path)) == []
    assert not (tmp_path / ADMIN_KEY_FILE).exists()
    assert await _key_events(node) == []


async def test_the_admin_key_variable_is_registered_once_under_one_id(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    for _ in range(2):
        assert await _start_notes(node, auth_on(tmp_path)) == []
    (created,) = await _key_events(node)
    assert created.key_id == admin_key_id(ADMIN_KEY) and created.permissions == ["admin"]
    assert not (tmp_path / ADMIN_KEY_FILE).exists()


async def test_a_revoked_admin_key_variable_stays_revoked_and_a_new_admin_key_is_made(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    """Revoking every admin key, then restarting without the variable, is the way back in:
    a new admin key in the file, for whoever can read the server's data folder."""
    async with api_client(node, auth_on(tmp_path)) as client:
        revoked = await client.delete(f"/api/v1/keys/{admin_key_id(ADMIN_KEY)}",
                                      headers=bearer(ADMIN_KEY))
        assert revoked.status_code == 200
    (warning,) = await _start_notes(node, auth_on(tmp_path))
    assert "JOBLEDGER_ADMIN_KEY names a key that was revoked" in warning
    (note,) = await _start_notes(node, auth_on(tmp_path, admin_key=None))
    assert "created the first admin key" in note


# -- real processes ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", [["--auth", "off"], []])
def test_serve_refuses_auth_off_on_an_address_others_reach(tmp_path: Path,
                                                           how: list[str]) -> None:
    env = {**_env(), **({} if how else {"JOBLEDGER_AUTH": "off"})}
    result = subprocess.run([str(JOBLEDGER), "serve", "--host", "0.0.0.0", *how], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert_one_line(result, 2, "--auth off with --host 0.0.0.0", "--insecure-no-auth")
    assert not (tmp_path / "jobledger.db").exists()  # refused before anything started


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "j.db", "--demo", "--auth", "on")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


@pytest.mark.slow
def test_a_server_with_auth_on_says_so_and_local_clients_use_its_key_file(
    auth_server: ServerProcess, tmp_path: Path,
) -> None:
    data = tmp_path
    banner = poll(lambda: "admin.key" in auth_server.output() and auth_server.output(), 10)
    assert f"http://127.0.0.1:{auth_server.port}, auth on (API keys, users)" in banner
    assert f"created the first admin key, in {data / ADMIN_KEY_FILE}" in banner
    admin_key = read_key_file(data / ADMIN_KEY_FILE)
    assert admin_key is not None and admin_key not in banner
    assert auth_server.http.get("/api/v1/stats").status_code == 401

    server = ["--server", auth_server.url]
    made = jobledger("keys", "create", "ci", "--permissions", "submit_tasks,read_tasks",
                     "--expires", "30d", *server, cwd=data)  # the key file of its folder
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert key.startswith("jl_") and "permissions: read_tasks,submit_tasks" in made.stdout
    assert httpx.get(f"{auth_server.url}/api/v1/stats", headers=bearer(key)).status_code == 200

    elsewhere = data / "elsewhere"
    elsewhere.mkdir()
    refused = jobledger("submit", "echo", *server, cwd=elsewhere)
    assert_one_line(refused, 1, "no credential", "--api-key or JOBLEDGER_API_KEY")
    submitted = subprocess.run([str(JOBLEDGER), "submit", "echo", *server], cwd=elsewhere,
                               env={**_env(), "JOBLEDGER_API_KEY": key}, capture_output=True,
                               text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
