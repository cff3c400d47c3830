"""`as_of`: answering a query from the read models as they were at a past moment
(services/history/asof.py). The answer says which moment it reflects in two headers:
X-As-Of-Position (the log position, which can be passed back as as_of) and X-As-Of-Time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobledger.projections.queries import Queries
from jobledger.schemas.api import AS_OF_PATTERN
from jobledger.services.history.asof import Moment
from jobledger.services.history.position import AsOfError

from .deps import node
from .responses import JSON, ApiError

AS_OF_DESCRIPTION = (
    "answer as of this moment: an RFC 3339 time, or a log position "
    "(topic/partition:offset,..., as the X-As-Of-Position header gives it); docs/audit.md")


class AsOfQuery(msgspec.Struct, frozen=True):
    """The query parameter of the read endpoints that can answer for a past moment."""

    as_of: Annotated[str, msgspec.Meta(
        pattern=AS_OF_PATTERN, description=AS_OF_DESCRIPTION)] | msgspec.UnsetType = msgspec.UNSET


AS_OF_ERRORS = {400: "as_of is malformed (INVALID_ARGUMENT) or in the future, or past the "
                "end of the log (AS_OF_IN_FUTURE), or before what the log keeps after a cut "
                "by --log-retention (AS_OF_BEFORE_RETAINED)"}


def as_of_param(request: Request) -> str | None:
    return request.query_params.get("as_of")


async def moment_of(request: Request, as_of: str,
                    only: tuple[str, int] | None = None) -> Moment:
    """The moment as_of names; 400 naming what is wrong with it."""
    try:
        return await node(request).history.moment(as_of, only)
    except AsOfError as exc:
        raise ApiError(400, exc.code, str(exc), "as_of") from None


def stamped(response: Response, moment: Moment, request: Request | None = None) -> Response:
    response.headers["X-As-Of-Position"] = moment.position
    response.headers["X-As-Of-Time"] = moment.time
    since = node(request).history.lists_finished_since(moment) if request else None
    if since is not None:
        response.headers["X-As-Of-Finished-Listed-Since"] = since
    return response


async def answer_as_of(request: Request, query: Callable[[Queries, Moment], Awaitable[Any]],
                       live: Callable[[Queries], Awaitable[Any]]) -> Response:
    """`live(queries)` as JSON, or with an as_of, `query` over the read models then."""
    as_of = as_of_param(request)
    if as_of is None:
        return JSON(await live(node(request).queries))
    moment = await moment_of(request, as_of)
    async with node(request).history.at(moment) as then:
        body = await query(then, moment)
    return stamped(JSON(body), moment, request)
