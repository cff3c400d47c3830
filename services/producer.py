"""Turning enqueue requests into JobEnqueued events: validation, ids, run times.

Every way in (REST, the Python client, the CLI) validates through here, so a bad input
gets the same error naming the same field whichever way it came.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec

from jobledger.schemas import JOBS, Actor, Envelope, JobEnqueued, uuid7
from jobledger.schemas.api import MAX_PAYLOAD_BYTES, BatchRequest, TaskRequest

from .clock import Clock
from .publisher import Publisher

_encoder = msgspec.json.Encoder()
_task_decoder = msgspec.json.Decoder(TaskRequest)
_batch_decoder = msgspec.json.Decoder(BatchRequest)
_PATH = re.compile(r"at `\$((?:\.\w+|\[\d+\])+)`")


class InvalidJob(ValueError):
    """A request that cannot become a job. `field` names the offending input."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def job_id_for_key(idempotency_key: str) -> str:
    """The job id of a job enqueued with an idempotency key: the same key always gives the
    same id, so a second enqueue lands on the same job (and partition) and is a duplicate.
    A UUIDv8 (name-based), since a UUIDv7 cannot be derived from a key."""
    digest = bytearray(hashlib.sha256(b"jobledger:" + idempotency_key.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _invalid(exc: msgspec.ValidationError | msgspec.DecodeError) -> InvalidJob:
    text = str(exc)
    match = _PATH.search(text)
    field = match.group(1).lstrip(".") if match else None
    return InvalidJob(text, field)


def parse_task(body: bytes) -> TaskRequest:
    try:
        return _check(_task_decoder.decode(body))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from None


def parse_batch(body: bytes) -> BatchRequest:
    try:
        batch = _batch_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _invalid(exc) from None
    for i, task in enumerate(batch.tasks):
        try:
            _check(task)
        except InvalidJob as exc:
            raise InvalidJob(f"tasks[{i}]: {exc}", f"tasks[{i}].{exc.field}") from None
    return batch


def task_request(task_type: str, payload: Any = None, **options: Any) -> TaskRequest:
    """Validate Python arguments into a TaskRequest (what Client.submit and app code use)."""
    try:
        raw = msgspec.Raw(_encoder.encode(payload))
    except (TypeError, msgspec.EncodeError, ValueError) as exc:
        raise InvalidJob(f"payload is not JSON: {exc}", "payload") from None
    fields = {k: v for k, v in options.items() if v is not None}
    try:
        request = msgspec.convert({"task_type": task_type, **fields}, TaskRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    return _check(msgspec.structs.replace(request, payload=raw))


def _check(request: TaskRequest) -> TaskRequest:
    if len(request.payload) > MAX_PAYLOAD_BYTES:
        raise InvalidJob(
            f"payload is {len(request.payload)} bytes; at most {MAX_PAYLOAD_BYTES} (1 MiB)",
            "payload",
        )
    if request.schedule_at is not None and request.delay_seconds is not None:
        raise InvalidJob("give schedule_at or delay_seconds, not both", "schedule_at")
    if request.schedule_at is not None and request.schedule_at.tzinfo is None:
        raise InvalidJob("schedule_at needs a timezone (e.g. a trailing Z)", "schedule_at")
    return request


class Producer:
    def __init__(self, publisher: Publisher, clock: Clock):
        self.publisher = publisher
        self.clock = clock

    def envelope(self, request: TaskRequest, actor: Actor | None = None) -> Envelope:
        now = self.clock.now()
        run_at = request.schedule_at
        if request.delay_seconds:
            run_at = now + timedelta(seconds=request.delay_seconds)
        key = request.idempotency_key
        job_id = job_id_for_key(key) if key is not None else uuid7()
        event = JobEnqueued(
            job_id=job_id, task_type=request.task_type, queue=request.queue,
            payload=request.payload, priority=request.priority, run_at=run_at,
            timeout_seconds=request.timeout_seconds, max_retries=request.max_retries,
            idempotency_key=key,
        )
        return self.publisher.envelope(event, job_id, actor=actor)

    async def enqueue(
        self, requests: Sequence[TaskRequest], actor: Actor | None = None
    ) -> list[tuple[Envelope, tuple[int, int]]]:
        """Append one JobEnqueued per request as one batch; each envelope with its
        position, once durable."""
        envs = [self.envelope(r, actor) for r in requests]
        positions = await self.publisher.append_now(JOBS, envs)
        return list(zip(envs, positions, strict=True))
