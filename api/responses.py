"""JSON responses encoded by msgspec, and the one error shape: {"error", "code"}."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from jobledger.schemas.api import ErrorBody

_encoder = msgspec.json.Encoder()


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


class ApiError(Exception):
    """Raised by a handler to answer with an error body and status."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field

    def response(self) -> JSON:
        return JSON(ErrorBody(error=str(self), code=self.code, field=self.field), self.status)
