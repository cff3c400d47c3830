"""The descriptions users read (`jobledger schema`, /openapi.json and the /docs page built
from it) speak of the wire format and the API, not of the code: no module paths, no names
of internal parts, no Python. Notes for maintainers are comments in the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from jobledger.api.app import ENDPOINTS
from jobledger.api.openapi import build_spec
from jobledger.schemas.jsonschema import wire_schema

# What a description must not mention: module paths and package names, the parts of the
# implementation a user never deals with, and Python spellings (JSON says null, not None).
INTERNAL = re.compile(
    r"\w\.py\b|\b(?:schemas|projections|services|tests)/|\bjobledger\.\w"
    r"|\b(?:reducers?|dispatcher|projector|hub|msgspec|structs?|upcast\w*|gc|cyclic"
    r"|executor|ready.set|snapshot|in memory)\b|\bself\.|__\w+__",
    re.IGNORECASE,
)
PYTHON_NONE = re.compile(r"\bNone\b")


def descriptions(document: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(where, text) of every description in a JSON document."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "description" and isinstance(value, str):
                yield where, value
            else:
                yield from descriptions(value, f"{where}/{key}")
    elif isinstance(document, list):
        for i, value in enumerate(document):
            yield from descriptions(value, f"{where}/{i}")


def internal_mentions(document: Any) -> list[str]:
    found = []
    for where, text in descriptions(document):
        for pattern in (INTERNAL, PYTHON_NONE):
            for match in pattern.finditer(text):
                found.append(f"{where}: {match.group()!r} in {text!r}")
    return found


DOCUMENTS = {"jobledger schema": wire_schema, "/openapi.json": lambda: build_spec(ENDPOINTS)}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_descriptions_carry_no_implementation_notes(name: str) -> None:
    assert internal_mentions(DOCUMENTS[name]()) == []


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_documents_have_descriptions_to_check(name: str) -> None:
    assert len(list(descriptions(DOCUMENTS[name]()))) >= 20


@pytest.mark.parametrize("text", [
    "See services/runtime/dispatcher.py.", "the reducer ignores it", "retry_at None: dead",
    "opt out of the cyclic GC (gc=False)", "upcast on read", "jobledger.schemas.jobs",
    "keeps only unfinished jobs in memory",
])
def test_the_check_sees_an_implementation_note(text: str) -> None:
    assert internal_mentions({"properties": {"x": {"description": text}}}) != []


@pytest.mark.parametrize("text", [
    "Never fires by itself: only POST /api/v1/schedules/{id}/trigger runs it.",
    "total is null while unknown", "see docs/events.md",
])
def test_user_facing_text_passes(text: str) -> None:
    assert internal_mentions({"description": text}) == []
