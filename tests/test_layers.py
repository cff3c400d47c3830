"""The layers import downward only, and the public names stay where users import them.

schemas/ imports nothing of the project; projections/ only schemas/; services/ never api/,
except the CLI, which starts the API server. A new upward import fails here with the file
and the line that makes it (docs/architecture.md, *Layers*).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import jobledger

ROOT = Path(__file__).resolve().parent.parent

# layer -> the jobledger.* packages it must not import
FORBIDDEN = {
    "schemas": ("projections", "services", "api"),
    "projections": ("services", "api"),
    "services": ("api",),
}
MAY_IMPORT_API = ("services/cli/",)  # `jobledger serve` and `api` start the Starlette app


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def upward_imports(layer: str) -> list[str]:
    problems = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(MAY_IMPORT_API):
            continue
        for line, module in imported_modules(ast.parse(path.read_text())):
            parts = module.split(".")
            if parts[0] == "jobledger" and len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                problems.append(f"{relative}:{line} imports {module}")
    return problems


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_upward(layer: str) -> None:
    assert upward_imports(layer) == []


def test_the_api_serves_the_node_protocol_not_a_concrete_node() -> None:
    # The same app serves an EmbeddedNode and a KafkaNode (docs/architecture.md, *Layers*).
    concrete = ("jobledger.services.node.embedded", "jobledger.services.node.kafka")
    found = [f"{path.relative_to(ROOT).as_posix()}:{line} imports {module}"
             for path in sorted((ROOT / "api").rglob("*.py"))
             for line, module in imported_modules(ast.parse(path.read_text()))
             if module.startswith(concrete)]
    assert found == []


def test_the_check_sees_an_upward_import() -> None:
    tree = ast.parse("import os\nfrom jobledger.services.log import protocol\n")
    assert imported_modules(tree) == [(1, "os"), (2, "jobledger.services.log")]


PUBLIC = [
    "App",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "InvalidArgument",
    "InvalidJob",
    "JobCancelledError",
    "JobContext",
    "NotFound",
    "OutcomeUnknown",
    "PermanentError",
    "RateLimited",
    "ResyncRequired",
    "ServerError",
    "ServerUnreachable",
    "SyncClient",
    "Unauthorized",
    "UnknownTaskType",
    "WaitTimeout",
    "cron",
    "date",
    "interval",
    "manual",
    "task_request",
]


def test_the_public_names_are_pinned() -> None:
    assert jobledger.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_resolves(name: str) -> None:
    value = getattr(jobledger, name)
    assert getattr(value, "__name__", name) == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        jobledger.Nope  # noqa: B018


def test_kafka_names_are_public_too() -> None:
    from jobledger.kafka import KafkaConfig, KafkaLogBackend, jobledger_topics

    assert KafkaConfig("localhost:9092").bootstrap_servers == "localhost:9092"
    assert callable(jobledger_topics) and KafkaLogBackend.__name__ == "KafkaLogBackend"
