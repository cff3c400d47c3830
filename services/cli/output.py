"""How client commands print what the API answered."""

from __future__ import annotations

from typing import Any

import msgspec


def json_text(value: Any) -> str:
    """The answer as the API's JSON (the Structs encode to the fields the server sent),
    indented for reading."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
