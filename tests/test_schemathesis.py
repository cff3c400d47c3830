"""schemathesis over every operation in /openapi.json, against a real `jobledger serve` on a
loopback port: generated requests (valid and invalid) never get a 5xx, and every answer
fits the document (status documented, content type, body schema, headers)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation.case import Case
from schemathesis.schemas import BaseSchema

from jobledger.services.schedules.commands import ScheduleError, parse_request
from tests.support.api_harness import demo_server
from tests.support.procs import ServerProcess

EXAMPLES = 40  # per operation and phase; the whole run stays under a minute

schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with demo_server(tmp_path_factory.mktemp("schemathesis")) as process:
        yield process


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


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
    - GET /ws, a WebSocket endpoint: its only request it accepts is a handshake, and no
      HTTP client can go on after the 101 (tests/test_ws.py covers it);
    - a schedule whose trigger cannot fire (400 INVALID_TRIGGER): a cron expression
      croniter cannot parse, a timezone that does not exist, a run_date not in the
      future, an end before the start, fields of another kind of trigger, an interval
      under the minimum. Only if the body itself is one the server decodes: the document
      must describe every field's type, format and range exactly."""
    if case.operation.path == "/ws":
        return True
    if not case.operation.path.startswith("/api/v1/schedules") or response.status_code != 400:
        return False
    if response.json().get("code") != "INVALID_TRIGGER":
        return False
    try:
        parse_request(json.dumps(case.body).encode())
    except ScheduleError:
        return False
    return True
