"""schemathesis over every operation in /openapi.json, against a real `jobledger serve` on a
loopback port with auth on, called with an admin key: generated requests (valid and
invalid) never get a 5xx, and every answer fits the document (status documented, content
type, body schema, headers); schemathesis also checks that the operations the document
says need the key refuse a request without it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.auths import AuthContext
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case
from schemathesis.schemas import BaseSchema

from jobledger.schemas.api import AS_OF_PATTERN
from jobledger.services.schedules.commands import ScheduleError, parse_request
from tests.support.api_harness import demo_server
from tests.support.auth import ADMIN_KEY, bearer
from tests.support.procs import ServerProcess

EXAMPLES = 40  # per operation and phase; the whole run stays under a minute

schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # No rate limit: it would answer most of the cases 429 (a documented answer) before
    # they reach the handlers they are meant to try.
    with demo_server(tmp_path_factory.mktemp("schemathesis"), "--auth", "on", "--rate-limit", "0",
                     env={"JOBLEDGER_ADMIN_KEY": ADMIN_KEY}) as process:
        yield process


# Refusals schemathesis counts as rejecting a schema-violating request, beside its own
# list: 413 (an oversized body is refused before it is parsed, e.g. a key's 4 KiB limit) and
# 431 (oversized headers).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429",
            "431", "5xx"]


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}})
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


@schema.auth()
class AdminKey:
    """The admin key on every request, except those schemathesis makes without a credential
    on purpose (to check that they are refused)."""

    def get(self, case: Case, context: AuthContext) -> str:
        return ADMIN_KEY

    def set(self, case: Case, data: str, context: AuthContext) -> None:
        case.headers = {**(case.headers or {}), **bearer(data)}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented_and_never_5xx(case: Case) -> None:
    # Every built-in check, positive_data_acceptance (ST202) among them: a request the
    # document allows is accepted (issue 18, item 10), with the two exceptions below.
    response = case.call()
    refusal_allowed = _refusal_the_document_cannot_rule_out(case, response)
    case.validate_response(
        response, excluded_checks=[positive_data_acceptance] if refusal_allowed else [])


def _refusal_the_document_cannot_rule_out(case: Case, response: requests.Response) -> bool:
    """The schema-valid requests the server may refuse, since no JSON Schema can say which:
    - GET /ws, a WebSocket endpoint: the only request it accepts is a handshake, and no
      HTTP client can go on after the 101 (tests/test_ws.py covers it);
    - a refusal that depends on the server's state or clock, named by its operation, code
      and field (_STATEFUL), or an as_of the document allows (AS_OF_PATTERN) that this log
      or this clock cannot answer;
    - a schedule whose trigger cannot fire (400 INVALID_TRIGGER): a cron expression
      croniter cannot parse, a timezone that does not exist, a run_date not in the
      future, an end before the start, fields of another kind of trigger, an interval
      under the minimum. Only if the body itself is one the server decodes: the document
      must describe every field's type, format and range exactly."""
    if case.operation.path == "/ws":
        return True
    if response.status_code != 400:
        return False
    error = response.json()
    operation = (case.operation.method.upper(), case.operation.path)
    if _STATEFUL.get(operation) == (error.get("code"), error.get("field")):
        return True
    as_of = (case.query or {}).get("as_of")
    if error.get("field") == "as_of" and isinstance(as_of, str) \
            and re.fullmatch(AS_OF_PATTERN, as_of):
        # A time after the server's clock or past the log's end (AS_OF_IN_FUTURE), a topic
        # or a partition this log lacks, the 30th of February: the log and the clock decide.
        return True
    if not case.operation.path.startswith("/api/v1/schedules"):
        return False
    if error.get("code") != "INVALID_TRIGGER":
        return False
    try:
        parse_request(json.dumps(case.body).encode())
    except ScheduleError:
        return False
    return True


# operation -> the (code, field) of a 400 that depends on what the server holds or when:
_STATEFUL = {
    ("POST", "/api/v1/keys"): ("INVALID_ARGUMENT", "expires_at"),  # a time that has passed
    ("GET", "/api/v1/tasks"): ("INVALID_ARGUMENT", "starting_after"),  # no such task
}
