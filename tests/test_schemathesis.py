"""schemathesis over every operation in /openapi.json, against a real `jobledger serve` on a
loopback port with auth on, called with an admin key: generated requests (valid and
invalid) never get a 5xx, and every answer fits the document (status documented, content
type, body schema, headers); schemathesis also checks that the operations the document
says need the key refuse a request without it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.auths import AuthContext
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case
from schemathesis.schemas import BaseSchema

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
    # Every built-in check but one: positive_data_acceptance wants every schema-valid
    # request to succeed, and two kinds of them deliberately do not. A body whose fields
    # are each valid but cannot be applied together answers 422 (schedule_at with
    # delay_seconds, a schedule_at outside 1970..9000); and msgspec refuses 246.0 for an
    # integer field (400 naming it), which JSON Schema counts as an integer.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
