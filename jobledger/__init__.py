"""jobledger: an event-sourced job orchestrator.

The names users write against, importable from here whatever the package's layout:

    from jobledger import App, JobContext, PermanentError, Client, SyncClient, NotFound

Each is imported on first use, so ``import jobledger`` stays cheap and a producer that
only needs the client never loads the runtime (and the reverse).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # "X as X" marks a re-export for type checkers and linters, which cannot read the
    # computed __all__ below.
    from jobledger.services.client.async_client import Client as Client
    from jobledger.services.client.errors import ClientError as ClientError
    from jobledger.services.client.errors import Conflict as Conflict
    from jobledger.services.client.errors import Forbidden as Forbidden
    from jobledger.services.client.errors import InvalidArgument as InvalidArgument
    from jobledger.services.client.errors import NotFound as NotFound
    from jobledger.services.client.errors import OutcomeUnknown as OutcomeUnknown
    from jobledger.services.client.errors import RateLimited as RateLimited
    from jobledger.services.client.errors import ResyncRequired as ResyncRequired
    from jobledger.services.client.errors import ServerError as ServerError
    from jobledger.services.client.errors import ServerUnreachable as ServerUnreachable
    from jobledger.services.client.errors import Unauthorized as Unauthorized
    from jobledger.services.client.errors import UnknownTaskType as UnknownTaskType
    from jobledger.services.client.errors import WaitTimeout as WaitTimeout
    from jobledger.services.client.sync_client import SyncClient as SyncClient
    from jobledger.services.handlers.app import App as App
    from jobledger.services.handlers.app import PermanentError as PermanentError
    from jobledger.services.handlers.app import cron as cron
    from jobledger.services.handlers.app import date as date
    from jobledger.services.handlers.app import interval as interval
    from jobledger.services.handlers.app import manual as manual
    from jobledger.services.handlers.context import JobCancelledError as JobCancelledError
    from jobledger.services.handlers.context import JobContext as JobContext
    from jobledger.services.write.producer import InvalidJob as InvalidJob
    from jobledger.services.write.producer import task_request as task_request

_HOME = {
    "App": "jobledger.services.handlers.app",
    "PermanentError": "jobledger.services.handlers.app",
    "cron": "jobledger.services.handlers.app",
    "date": "jobledger.services.handlers.app",
    "interval": "jobledger.services.handlers.app",
    "manual": "jobledger.services.handlers.app",
    "JobContext": "jobledger.services.handlers.context",
    "JobCancelledError": "jobledger.services.handlers.context",
    "Client": "jobledger.services.client.async_client",
    "SyncClient": "jobledger.services.client.sync_client",
    **dict.fromkeys((
        "ClientError", "Conflict", "Forbidden", "InvalidArgument", "NotFound", "OutcomeUnknown",
        "RateLimited", "ResyncRequired", "ServerError", "ServerUnreachable", "Unauthorized",
        "UnknownTaskType", "WaitTimeout"), "jobledger.services.client.errors"),
    "InvalidJob": "jobledger.services.write.producer",
    "task_request": "jobledger.services.write.producer",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'jobledger' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
