"""The handler registry (services/handlers/app.py): registration, merging Apps, load_app's
errors."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from jobledger.services.handlers.app import App, AppLoadError, Handler, load_app
from jobledger.services.handlers.context import JobContext
from jobledger.services.handlers.demo import demo


def test_job_registers_the_function_and_returns_it_as_a_job() -> None:
    app = App()

    async def send(ctx: JobContext, payload: Any) -> None:
        return None

    def resize(ctx: JobContext, payload: Any) -> None:
        return None

    job = app.job("send_email", max_retries=5, timeout=60)(send)
    assert (job.fn, job.task_type, job.__name__) == (send, "send_email", "send")
    assert app.job("resize")(resize).fn is resize

    assert app.handlers == {
        "send_email": Handler("send_email", send, is_async=True, max_retries=5, timeout=60),
        "resize": Handler("resize", resize, is_async=False),
    }


async def test_a_job_calls_like_its_function() -> None:
    app = App()

    @app.job("double")
    async def double(ctx: JobContext, payload: int) -> int:
        """Twice the payload."""
        return 2 * payload

    @app.job("triple")
    def triple(ctx: JobContext, payload: int) -> int:
        return 3 * payload

    ctx: Any = None  # not used by these handlers
    assert (await double(ctx, 21), triple(ctx, 2)) == (42, 6)
    assert (double.__name__, double.__doc__) == ("double", "Twice the payload.")
    assert app.handlers["double"].is_async and not app.handlers["triple"].is_async


def test_registering_a_task_type_twice_raises_naming_it() -> None:
    app = App()

    @app.job("send_email")
    async def send(ctx: JobContext, payload: Any) -> None:
        return None

    with pytest.raises(ValueError, match="'send_email' already has a handler"):
        app.job("send_email")
    assert app.handlers["send_email"].fn is send.fn


def test_an_empty_task_type_is_refused() -> None:
    with pytest.raises(ValueError, match="task_type must not be empty"):
        App().job("")


def test_include_adds_every_handler_and_refuses_a_clash() -> None:
    app = App()
    app.include(demo)
    assert set(app.handlers) == {"echo", "sleep", "fail", "flaky"}

    other = App()

    @other.job("echo")
    async def echo(ctx: JobContext, payload: Any) -> Any:
        return payload

    with pytest.raises(ValueError, match="'echo' already has a handler"):
        app.include(other)
    assert app.handlers["echo"] is demo.handlers["echo"]


def test_load_app_returns_the_app_a_spec_names() -> None:
    assert load_app("jobledger.services.handlers.demo:demo") is demo


@pytest.mark.parametrize(
    "spec", ["jobledger.services.handlers.demo", ":demo", "jobledger.services.handlers.demo:"])
def test_load_app_without_module_and_attribute_says_what_a_spec_looks_like(spec: str) -> None:
    with pytest.raises(ValueError, match="module:attribute") as error:
        load_app(spec)
    assert repr(spec) in str(error.value)


def test_load_app_names_a_missing_module() -> None:
    with pytest.raises(AppLoadError, match="no module named 'jobledger.services.no_such_module'"):
        load_app("jobledger.services.no_such_module:app")


def test_load_app_names_a_missing_attribute() -> None:
    with pytest.raises(AppLoadError, match="module jobledger.services.handlers.demo has no "
                       "attribute 'no_such_app'"):  # fmt: skip
        load_app("jobledger.services.handlers.demo:no_such_app")


def test_load_app_says_when_the_attribute_is_not_an_app() -> None:
    with pytest.raises(AppLoadError, match="demo:echo: echo is a job handler, not a jobledger App"):
        load_app("jobledger.services.handlers.demo:echo")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the user's module, as the current directory, not on sys.path (as
    under the `jobledger` script, whose sys.path starts with its own folder)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    return tmp_path


def _module(folder: Path, source: str) -> str:
    name = f"userjobs_{uuid.uuid4().hex[:8]}"  # a fresh name: sys.modules keeps what it imported
    (folder / f"{name}.py").write_text(source)
    return name


def test_load_app_finds_a_module_in_the_current_directory(project: Path) -> None:
    name = _module(project, "from jobledger import App\napp = App()\n")
    assert isinstance(load_app(f"{name}:app"), App)
    assert sys.path[0] == str(project)


def test_a_module_that_fails_to_import_is_one_line_naming_its_error(project: Path) -> None:
    broken = _module(project, "import no_such_dependency_xyz\n")
    with pytest.raises(AppLoadError, match=f"--app {broken}:app: importing {broken} failed: "
                       "No module named 'no_such_dependency_xyz'"):  # fmt: skip
        load_app(f"{broken}:app")
    raising = _module(project, "1 / 0\n")
    with pytest.raises(AppLoadError, match="raised ZeroDivisionError: division by zero"):
        load_app(f"{raising}:app")
