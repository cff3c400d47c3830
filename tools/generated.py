"""What the scripts that write generated parts of docs/ share: rewrite a page, or with
--check only say whether it is current (exit 1 if not, 2 if it has no generated part)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def check_or_write(argv: list[str] | None, *, module: str, default: Path,
                   rewrite: Callable[[str], str]) -> int:
    """`rewrite(text)` gives the page with its generated parts current, or raises
    ValueError naming what is missing."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=f"Write the generated parts of {default.name}, or check they are current.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    parser.add_argument("page", nargs="?", type=Path, default=default)
    args = parser.parse_args(argv)
    text = args.page.read_text()
    try:
        current = rewrite(text)
    except ValueError as error:
        print(f"{args.page}: {error}", file=sys.stderr)
        return 2
    if not args.check:
        args.page.write_text(current)
    elif current != text:
        print(f"{args.page} is stale: run python -m {module}", file=sys.stderr)
        return 1
    return 0
