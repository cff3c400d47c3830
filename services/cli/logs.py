"""How the long-running commands (`serve`, `worker`, `api`) and `replay` log: the
--log-level and --log-format flags, the two formats, and `configure`, called once by
main() for every command that has the flags. The lines themselves are written where
things happen (services/runtime/server_log.py); docs/operations.md lists them.

Lines go to stderr. `text` is one line per event for people: the time, the level and a
sentence. `json` is one JSON object per line for log shippers: time, level, logger,
event, message, task_id, task_type, attempt, worker, trace_id and span_id (each of the
last six null when the line is about no job, or no span is current), and the event's
other fields. `auto`, the default, is text when stderr is a terminal, json otherwise (a
service manager, a container, a pipe).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from typing import Any, TextIO

import msgspec

from jobledger.services.runtime.server_log import iso_utc

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "text", "json")
# Other libraries' lines (aiokafka, uvicorn, faust) are shown from this level whatever
# --log-level says: at info, aiokafka alone writes a dozen lines per rebalance.
LIBRARY_LEVEL = logging.WARNING
_encode = msgspec.json.Encoder(enc_hook=str).encode


def add_log_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--log-level", type=str.lower, choices=LEVELS, default="info",
                       help="jobledger's lines on stderr from this level up: info tells start, "
                       "stop, failed and retried jobs, lost workers; debug also every "
                       "completed job (default info)")
    group.add_argument("--log-format", type=str.lower, choices=FORMATS, default="auto",
                       help="text: a line for people; json: a JSON object per line; auto: text "
                       "when stderr is a terminal, else json (default auto)")


def configure(level: str, log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """Send log lines to stream (default: sys.stderr as it is when each line is written)
    in log_format; jobledger's from level up, other libraries' from LIBRARY_LEVEL up.
    Calling it again replaces what an earlier call set up."""
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name("jobledger")
    if log_format == "auto":
        log_format = "text" if (stream or sys.stderr).isatty() else "json"
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "jobledger"]:
        root.removeHandler(old)
    root.addHandler(handler)
    number = logging.getLevelName(level.upper())
    root.setLevel(max(number, LIBRARY_LEVEL))
    logging.getLogger("jobledger").setLevel(number)
    return handler


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to sys.stderr as it is at each line: a progress bar (rich, under `replay`)
    swaps in a proxy that prints lines above the bar."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]  # follows sys.stderr, never set
        return sys.stderr


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The event name and fields a line was logged with (server_log.note), else none."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    """`2025-06-01 14:03:07.123 INFO    <message>` on one line; a line that is not one of
    jobledger's events names its logger first. A traceback, if any, follows."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", "\\n")
        if "event" not in fields_of(record):
            message = f"{record.name}: {message}"
        stamp = datetime.fromtimestamp(record.created).isoformat(" ", timespec="milliseconds")
        line = f"{stamp} {record.levelname:<7} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, event ("log" for a
    line that is not one of jobledger's events), task_id, task_type, attempt, worker (null
    when the line is about no job), trace_id and span_id (of the OpenTelemetry span
    current where the line was logged, null if none is), the event's other fields,
    message, and exc (the traceback) when there is one."""

    def __init__(self) -> None:
        super().__init__()
        # Imported here, not at the top: only a JSON log needs it, and every CLI command
        # imports this module (opentelemetry.trace takes some 40 ms to import).
        from opentelemetry.trace import get_current_span

        self._current_span = get_current_span

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": "log",
            **_NO_JOB,
            **self._trace_ids(),
            **fields_of(record),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encode(line).decode()

    def _trace_ids(self) -> dict[str, str | None]:
        """The current span's ids as W3C trace context writes them (32 and 16 lowercase
        hex digits). A handler formats in the thread that logged, so this is its span."""
        context = self._current_span().get_span_context()
        if not context.is_valid:
            return _NO_SPAN
        return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


_NO_JOB = {"task_id": None, "task_type": None, "attempt": None, "worker": None}
_NO_SPAN: dict[str, str | None] = {"trace_id": None, "span_id": None}
