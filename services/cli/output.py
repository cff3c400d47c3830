"""How client commands print what the API answered: `--format table|json|yaml`.

- json: exactly the API's JSON (the answer's Structs encode to the fields the server sent),
  indented; what a script parses.
- yaml: the same values as YAML (PyYAML, block style, keys in the API's order).
- table: rich tables, seed 003's look (square boxes); for people.

Without --format: table when stdout is a terminal, json otherwise, so a pipe gets JSON.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

FORMATS = ("table", "json", "yaml")
WIDE = 160  # columns of a table printed to a pipe or file (a terminal's own width otherwise)


def format_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS,
                        help="table, json (the API's JSON) or yaml (default: table on a "
                        "terminal, json otherwise)")


def chosen(given: str | None) -> str:
    """The format to print in: the one given, else table on a terminal, else json."""
    return given or ("table" if sys.stdout.isatty() else "json")


def json_text(value: Any) -> str:
    """The answer as the API's JSON, indented for reading."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def yaml_text(value: Any) -> str:
    import yaml  # type: ignore[import-untyped]

    text: str = yaml.safe_dump(msgspec.to_builtins(value), sort_keys=False, allow_unicode=True)
    return text


def emit(value: Any, given: str | None, table: Callable[[], RenderableType]) -> None:
    """Print the answer in the chosen format; `table` makes its table (only if needed)."""
    match chosen(given):
        case "json":
            print(json_text(value))
        case "yaml":
            print(yaml_text(value), end="")
        case _:
            console().print(table())


def console(stderr: bool = False) -> Console:
    """A rich console: a terminal's width, or WIDE columns where rich would assume 80."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else shutil.get_terminal_size((WIDE, 24)).columns
    return Console(file=stream, width=width)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]],
          title: str | None = None) -> Table:
    """A table in seed 003's look; None shows as "-"."""
    from rich import box
    from rich.table import Table

    out = Table(*columns, box=box.SQUARE, title=title, title_justify="left")
    for row in rows:
        out.add_row(*map(cell_text, row))
    return out


def cell_text(value: Any) -> str:
    """A value in a table cell: None as "-", booleans as JSON has them, JSON values as JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return str(value)


def fields(rows: Iterable[tuple[str, Any]], header: tuple[str, str] = ("Field", "Value")) -> Table:
    """A two-column table of named values (status, stats, cluster-status)."""
    return table(header, rows)
