"""What the client raises. A refusal is a `ClientError` of the class its answer names (by the
stable `code` first, then by the HTTP status), so callers catch what they can handle:

    ClientError                     .status, .code, .field: any refusal
    ├── InvalidArgument             400, 413, 415, 422: the request itself is wrong
    │   └── UnknownTaskType         400 UNKNOWN_TASK_TYPE: no handler is known for the type
    ├── Unauthorized                401: no API key, or one the server does not know
    ├── Forbidden                   403: the key may not do this
    ├── NotFound                    404: no such task, run or schedule
    ├── Conflict                    409: the state does not allow it (or the id exists)
    ├── RateLimited                 429: .retry_after seconds (retried first, see Client)
    └── ServerError                 5xx: the server failed; nothing is known to be done
        └── OutcomeUnknown          504 OUTCOME_UNKNOWN: it may have been done; retry with
                                    the same idempotency key

Besides: `ServerUnreachable` (a ConnectionError: no answer at all), `WaitTimeout` (a
TimeoutError: wait() gave up, the task goes on) and `ResyncRequired` (watch(): the cursor
is too old to resume; fetch the current state instead).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobledger.schemas.api import TaskDetail


class ClientError(Exception):
    """The server refused a request; status, code and field say why."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(body.get("error", f"HTTP {status}"))
        self.status = status
        self.code: str | None = body.get("code")
        self.field: str | None = body.get("field")


class InvalidArgument(ClientError):
    """The request is wrong (a field out of range, a bad body); `field` names the input."""


class UnknownTaskType(InvalidArgument):
    """No handler is known for the task type; the message lists the known ones."""


class Unauthorized(ClientError):
    """No API key, or one the server does not accept."""


class Forbidden(ClientError):
    """The API key may not do this."""


class NotFound(ClientError):
    """No task, run or schedule with that id."""


class Conflict(ClientError):
    """The state does not allow it: a finished task cancelled, an unfinished one requeued,
    a schedule id that exists."""


class RateLimited(ClientError):
    """Too many requests. `retry_after`: seconds the server asked to wait (None if it did not
    say). The client retries these by itself first, within its `rate_limit_wait`."""

    def __init__(self, status: int, body: dict[str, Any], retry_after: float | None = None):
        super().__init__(status, body)
        self.retry_after = retry_after


class ServerError(ClientError):
    """The server failed (5xx): a bug, or its log unavailable. Nothing is known to be done."""


class OutcomeUnknown(ServerError):
    """504 OUTCOME_UNKNOWN: the write may or may not have landed; retry with the same
    idempotency key."""


class ServerUnreachable(ConnectionError):
    """No answer from the server: it refused the connection, dropped it, or took longer
    than the client's timeout. A write may or may not have happened (use an idempotency
    key to retry an enqueue safely)."""


class WaitTimeout(TimeoutError):
    """wait() gave up: the task had not finished within its timeout. The task goes on (it
    is not cancelled); `.task` is its last state seen (None if no answer came in time)."""

    def __init__(self, task_id: str, timeout: float, task: TaskDetail | None):
        super().__init__(f"task {task_id} is still {task.status} after {timeout:g} s" if task
                         else f"no answer about task {task_id} within {timeout:g} s")
        self.task_id = task_id
        self.task = task


class ResyncRequired(Exception):
    """watch(): the server cannot resume from the cursor (older than its resume window, or
    from another log). Updates were missed: read the current state over REST, then watch
    afresh (without resume_from)."""

    def __init__(self, cursor: str | None):
        super().__init__(f"the server cannot resume from cursor {cursor!r}: read the current "
                         "state, then watch again without resume_from")
        self.cursor = cursor


_BY_CODE: dict[str, type[ClientError]] = {
    "UNKNOWN_TASK_TYPE": UnknownTaskType,
    "OUTCOME_UNKNOWN": OutcomeUnknown,
}
_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidArgument, 413: InvalidArgument, 415: InvalidArgument, 422: InvalidArgument,
    401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 429: RateLimited,
}


def error_of(status: int, body: dict[str, Any], retry_after: str | None = None) -> ClientError:
    """The exception an error answer stands for; `retry_after`: its Retry-After header."""
    kind = _BY_CODE.get(body.get("code") or "") or _BY_STATUS.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else ClientError
    if kind is RateLimited:
        return RateLimited(status, body, seconds_of(retry_after))
    return kind(status, body)


def seconds_of(retry_after: str | None) -> float | None:
    """A Retry-After header in seconds: a number of seconds, or an HTTP date (RFC 9110);
    None when absent or unreadable."""
    if not retry_after:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, with no zone said
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
