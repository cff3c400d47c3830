"""Turning enqueue requests into JobEnqueued events: validation, ids, run times.

Every way in (REST, the Python client, the CLI) validates through here, so a bad input
gets the same error naming the same field whichever way it came.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from jobledger.schemas import JOBS, Actor, Envelope, JobEnqueued
from jobledger.schemas.api import (
    DEFAULT_MAX_PAYLOAD_DEPTH,
    MAX_PAYLOAD_BYTES,
    BatchRequest,
    TaskRequest,
)
from jobledger.schemas.common import END_YEAR, FIRST_YEAR, uuid7s
from jobledger.schemas.nesting import exceeds, nesting_depth
from jobledger.services.runtime.clock import Clock
from jobledger.services.write.publisher import Publisher
from jobledger.services.write.whole_numbers import decode_request

_encoder = msgspec.json.Encoder()
_task_decoder = msgspec.json.Decoder(TaskRequest)
_batch_decoder = msgspec.json.Decoder(BatchRequest)
_payload_decoder = msgspec.json.Decoder()  # as the executor decodes a payload for its handler
_PATH = re.compile(r"at `\$((?:\.\w+|\[\d+\])+)`")
_NAMED = re.compile(r"(?:unknown|required) field `([^`]+)`")


class InvalidJob(ValueError):
    """A request that cannot become a job. `field` names the offending input; `code` says
    how it is wrong (the API answers INVALID_ARGUMENT, MALFORMED_JSON and PAYLOAD_TOO_DEEP
    with 400, PAYLOAD_TOO_LARGE with 413, UNPROCESSABLE with 422)."""

    def __init__(self, message: str, field: str | None = None, code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.field = field
        self.code = code


def job_id_for_key(idempotency_key: str) -> str:
    """The job id of a job enqueued with an idempotency key: the same key always gives the
    same id, so a second enqueue lands on the same job (and partition) and is a duplicate.
    A UUIDv8 (name-based), since a UUIDv7 cannot be derived from a key."""
    digest = bytearray(hashlib.sha256(b"jobledger:" + idempotency_key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def invalid_body(exc: msgspec.ValidationError | msgspec.DecodeError) -> InvalidJob:
    """A request body msgspec refused, as the InvalidJob naming its field (400)."""
    text = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return InvalidJob(f"the body is not valid JSON: {text}", None, "MALFORMED_JSON")
    return InvalidJob(text, _field_of(text))


def _field_of(message: str) -> str | None:
    """The input a msgspec message is about: `$.tasks[1].priority` -> tasks[1].priority;
    an unknown or missing field's name is appended to the path it was found at."""
    match = _PATH.search(message)
    path = match.group(1).lstrip(".") if match else ""
    named = _NAMED.search(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def parse_task(body: bytes, max_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH) -> TaskRequest:
    """The request in a POST /api/v1/tasks body; InvalidJob naming what is wrong. The
    payload may nest at most max_depth arrays and objects deep."""
    try:
        return check_payload(_check(decode_request(_task_decoder, TaskRequest, body)), max_depth)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise invalid_body(exc) from None
    except RecursionError:
        raise too_deep_to_decode("payload", max_depth) from None


def parse_batch(body: bytes, max_depth: int = DEFAULT_MAX_PAYLOAD_DEPTH) -> BatchRequest:
    """The tasks of a POST /api/v1/tasks/batch body, as parse_task checks each."""
    try:
        batch = decode_request(_batch_decoder, BatchRequest, body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise invalid_body(exc) from None
    except RecursionError:
        raise too_deep_to_decode("tasks", max_depth) from None
    for i, task in enumerate(batch.tasks):
        try:
            check_payload(_check(task), max_depth)
        except InvalidJob as exc:
            raise InvalidJob(f"tasks[{i}]: {exc}", f"tasks[{i}].{exc.field}", exc.code) from None
    return batch


def check_payload(request: TaskRequest, max_depth: int) -> TaskRequest:
    """The request, if a handler can take its payload: nested at most max_depth deep, and
    UTF-8 JSON text that decodes (msgspec.Raw skips over a string without checking it)."""
    problem = payload_problem(request.payload, max_depth)
    if problem is not None:
        raise InvalidJob(problem[1], "payload", problem[0])
    return request


def payload_problem(raw: msgspec.Raw, max_depth: int) -> tuple[str, str] | None:
    """(code, message) if a payload that msgspec has accepted as raw JSON is one no handler
    should get: nested deeper than max_depth (PAYLOAD_TOO_DEEP), or not UTF-8
    (MALFORMED_JSON: msgspec checks a skipped string's escapes, not its bytes). None if it
    is fine. Costs two byte counts and a scan for the usual payload, all ASCII."""
    payload = bytes(raw)
    if exceeds(payload, max_depth):
        return "PAYLOAD_TOO_DEEP", (f"payload is nested {nesting_depth(payload)} arrays and "
                                    f"objects deep; at most {max_depth} are accepted")
    if payload.isascii():
        return None
    try:
        _payload_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        return "MALFORMED_JSON", f"payload is not valid UTF-8 JSON: {exc}"
    return None


def too_deep_to_decode(field: str, max_depth: int) -> InvalidJob:
    return InvalidJob(f"{field} is nested too deep to decode; a payload may nest at most "
                      f"{max_depth} arrays and objects deep", field, "PAYLOAD_TOO_DEEP")


def task_request(task_type: str, payload: Any = None, **options: Any) -> TaskRequest:
    """Validate Python arguments into a TaskRequest (what Client.submit and app code use)."""
    try:
        raw = msgspec.Raw(_encoder.encode(payload))
    except (TypeError, msgspec.EncodeError, ValueError, RecursionError) as exc:
        raise InvalidJob(f"payload is not JSON: {exc}", "payload") from None
    fields = {k: v for k, v in options.items() if v is not None} if options else options
    if not fields and type(task_type) is str and task_type in _TYPES_CONVERTED:
        # Only the payload is new: building the request skips converting the name again
        # (docs/performance.md, "Figures behind the code").
        return _check(TaskRequest(task_type=task_type, payload=raw))
    try:
        request = msgspec.convert({"task_type": task_type, "payload": raw, **fields}, TaskRequest)
    except msgspec.ValidationError as exc:
        raise invalid_body(exc) from None
    if not fields:
        if len(_TYPES_CONVERTED) >= MAX_TYPES_CONVERTED:
            _TYPES_CONVERTED.clear()
        _TYPES_CONVERTED.add(task_type)
    return _check(request)


# Task type names msgspec.convert has accepted (the Name constraints), at most this many.
MAX_TYPES_CONVERTED = 1_000
_TYPES_CONVERTED: set[str] = set()


def _check(request: TaskRequest) -> TaskRequest:
    if len(request.payload) > MAX_PAYLOAD_BYTES:
        raise InvalidJob(
            f"payload is {len(request.payload)} bytes; at most {MAX_PAYLOAD_BYTES} (1 MiB)",
            "payload", "PAYLOAD_TOO_LARGE",
        )
    if request.schedule_at is not None and request.delay_seconds is not None:
        raise InvalidJob("give schedule_at or delay_seconds, not both", "schedule_at",
                         "UNPROCESSABLE")
    if request.schedule_at is not None and request.schedule_at.tzinfo is None:
        raise InvalidJob("schedule_at needs a timezone (e.g. a trailing Z)", "schedule_at")
    if request.schedule_at is not None and not (
        FIRST_YEAR <= request.schedule_at.year < END_YEAR  # as written: the document says so
    ):
        raise InvalidJob(
            f"schedule_at {request.schedule_at.isoformat()} is outside the years a job can be "
            f"scheduled in ({FIRST_YEAR} to {END_YEAR - 1})", "schedule_at", "UNPROCESSABLE",
        )
    return request


class Producer:
    def __init__(self, publisher: Publisher, clock: Clock):
        self.publisher = publisher
        self.clock = clock

    def envelope(
        self, request: TaskRequest, now: datetime, job_id: str, event_id: str, actor: Actor,
        causation_id: str | None = None, correlation_id: str | None = None,
        trace: dict[str, str] | None = None,
    ) -> Envelope:
        """The JobEnqueued envelope of a request, with a fresh job id (not used when the
        request has an idempotency key) and event id, and the causal ids given (none: the
        job starts a chain of its own, named by this event's id)."""
        run_at = request.schedule_at
        if request.delay_seconds:
            run_at = now + timedelta(seconds=request.delay_seconds)
        key = request.idempotency_key
        if key is not None:
            job_id = job_id_for_key(key)
        event = JobEnqueued(
            job_id=job_id, task_type=request.task_type, queue=request.queue,
            payload=request.payload, priority=request.priority, run_at=run_at,
            timeout_seconds=request.timeout_seconds, max_retries=request.max_retries,
            idempotency_key=key,
        )
        return Envelope(id=event_id, key=job_id, time=now, actor=actor, event=event,
                        causation_id=causation_id, correlation_id=correlation_id,
                        trace=trace or {})

    def envelopes(
        self, requests: Sequence[TaskRequest], actor: Actor | None = None,
        request_id: str | None = None, trace: dict[str, str] | None = None,
    ) -> list[Envelope]:
        """One JobEnqueued envelope per request; they share one enqueue time and actor, and
        the request that enqueued them (request_id) is their cause and their chain; and its
        trace context (W3C: traceparent, tracestate)."""
        now = self.clock.now()
        actor = actor or self.publisher.actor
        ids = uuid7s(2 * len(requests))
        envelope = self.envelope
        return [envelope(request, now, job_id, event_id, actor, request_id, request_id, trace)
                for request, job_id, event_id in zip(requests, ids[::2], ids[1::2], strict=True)]

    async def append(self, envs: list[Envelope]) -> list[tuple[int, int]]:
        """Append envelopes as one batch; the (partition, offset) of each, in order, once
        durable."""
        return await self.publisher.append_now(JOBS, envs)
