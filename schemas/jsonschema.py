"""The JSON Schema of the wire format, generated from the Structs (`jobledger schema`)."""

from __future__ import annotations

from typing import Any

import msgspec

from .envelope import Envelope


def wire_schema() -> dict[str, Any]:
    """One JSON Schema document: the envelope, with every event under $defs."""
    (envelope,), components = msgspec.json.schema_components(
        [Envelope], ref_template="#/$defs/{name}"
    )
    props = components["Envelope"]["properties"]
    # partition and offset come from the log, never from a producer.
    for name in ("partition", "offset"):
        props.pop(name, None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "jobledger event envelope",
        **envelope,
        "$defs": components,
    }
