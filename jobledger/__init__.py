"""jobledger: an event-sourced job orchestrator.

The names users write against, importable from here whatever the package's layout:

    from jobledger import App, JobContext, PermanentError, Client, cron, interval

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
    from jobledger.services.client.async_client import ClientError as ClientError
    from jobledger.services.client.async_client import ServerUnreachable as ServerUnreachable
    from jobledger.services.client.async_client import WaitTimeout as WaitTimeout
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
    "ClientError": "jobledger.services.client.async_client",
    "ServerUnreachable": "jobledger.services.client.async_client",
    "WaitTimeout": "jobledger.services.client.async_client",
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
