"""Rate limits per API key: the token bucket on a manual clock, the 429 with Retry-After and
the RateLimit-* headers through the app, and one real server in real time."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from jobledger.services.node.embedded import EmbeddedNode
from jobledger.services.security.bootstrap import SecuritySettings
from jobledger.services.security.ratelimit import Decision, RateLimiter
from tests.support.api_harness import api_client, assert_error, handlers
from tests.support.auth import ADMIN_KEY, auth_on, bearer, make_key
from tests.support.harness import NodeFactory, clock_of
from tests.support.procs import ServerProcess, poll


class Seconds:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_the_burst_through_then_one_request_per_interval() -> None:
    clock = Seconds()
    limiter = RateLimiter(rate=0.5, burst=3, now=clock)  # one request every 2 s
    assert [limiter.take("k") for _ in range(4)] == [
        Decision(True, 3, 2, 2, 0), Decision(True, 3, 1, 4, 0), Decision(True, 3, 0, 6, 0),
        Decision(False, 3, 0, 6, 2),
    ]
    clock.now += 1.5  # half a token short of one
    assert limiter.take("k") == Decision(False, 3, 0, 5, 1)  # whole seconds, rounded up
    clock.now += 0.5
    assert limiter.take("k").allowed and not limiter.take("k").allowed
    assert limiter.take("other").remaining == 2  # each principal has its own bucket
    clock.now += 3600
    assert limiter.take("k") == Decision(True, 3, 2, 2, 0)  # never more than the burst


def test_whole_seconds_ignore_float_noise() -> None:
    clock = Seconds()
    limiter = RateLimiter(rate=1 / 60, burst=1, now=clock)  # one request a minute
    limiter.take("k")
    clock.now += 59  # 59/60 of a token: (1 - 59/60) * 60 is 1.0000000000000009 in floats
    assert limiter.take("k").retry_after_s == 1


def test_full_buckets_are_forgotten_and_others_kept() -> None:
    clock = Seconds()
    limiter = RateLimiter(rate=1.0, burst=2, now=clock)
    limiter.take("a")
    clock.now += 1  # a's bucket is full again
    limiter.take("b")
    limiter.forget_full()
    assert len(limiter) == 1 and limiter.peek("b").remaining == 1


def test_retry_after_is_at_least_one_second() -> None:
    limiter = RateLimiter(rate=1000.0, burst=1, now=Seconds())
    limiter.take("k")
    assert limiter.take("k").retry_after_s == 1


@pytest.mark.parametrize(("fields", "flag"), [({"rate_limit": -1.0}, "--rate-limit"),
                                              ({"rate_limit": float("nan")}, "--rate-limit"),
                                              ({"rate_burst": 0}, "--rate-burst")])
def test_bad_limits_are_refused_naming_the_flag(fields: dict[str, float], flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        SecuritySettings(enabled=True, **fields)  # type: ignore[arg-type]


@pytest.fixture
async def node(make_node: NodeFactory) -> EmbeddedNode:
    return await make_node(handlers)


async def test_over_the_limit_is_429_with_retry_after_and_the_ratelimit_headers(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    settings = SecuritySettings(enabled=True, admin_key=ADMIN_KEY, data_dir=tmp_path,
                                rate_limit=1.0, rate_burst=2)
    clock = clock_of(node)
    async with api_client(node, settings) as client:
        key = bearer(await make_key(client, "submit_tasks", "read_tasks"))
        clock.advance(10)  # the admin's bucket full again; the new key's is full
        first = await client.get("/api/v1/stats", headers=key)
        second = await client.post("/api/v1/tasks", json={"task_type": "echo"}, headers=key)
        assert (first.status_code, second.status_code) == (200, 201)  # the hot route counts
        assert [(r.headers["ratelimit-limit"], r.headers["ratelimit-remaining"],
                 r.headers["ratelimit-reset"]) for r in (first, second)] == [
            ("2", "1", "1"), ("2", "0", "2")]
        refused = await client.get("/api/v1/stats", headers=key)
        body = assert_error(refused, 429, "RATE_LIMITED")
        assert body["error"] == "Rate limit exceeded"
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["ratelimit-remaining"] == "0"
        # Another key is not held back by this one.
        assert (await client.get("/api/v1/stats", headers=bearer(ADMIN_KEY))).status_code == 200
        clock.advance(0.5)
        assert (await client.get("/api/v1/stats", headers=key)).headers["retry-after"] == "1"
        clock.advance(0.5)
        assert (await client.get("/api/v1/stats", headers=key)).status_code == 200


async def test_without_a_limit_there_are_no_ratelimit_headers(
    node: EmbeddedNode, tmp_path: Path,
) -> None:
    async with api_client(node, auth_on(tmp_path)) as client:
        response = await client.get("/api/v1/stats", headers=bearer(ADMIN_KEY))
    assert response.status_code == 200 and "ratelimit-limit" not in response.headers


@pytest.mark.slow
def test_a_real_server_limits_in_real_time(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "j.db", "--demo", "--auth", "on", "--rate-limit", "2",
                           "--rate-burst", "3", env={"JOBLEDGER_ADMIN_KEY": ADMIN_KEY})
    try:
        server.wait_healthy()
        with httpx.Client(base_url=server.url, headers=bearer(ADMIN_KEY), timeout=5) as http:
            answers = [http.get("/api/v1/stats") for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 200]  # the burst
            for _ in range(50):  # a token comes back every 0.5 s: soon none is left
                refused = http.get("/api/v1/stats")
                if refused.status_code == 429:
                    break
            refused_at = time.monotonic()
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            poll(lambda: http.get("/api/v1/stats").status_code == 200, timeout=5, interval=0.05)
            assert time.monotonic() - refused_at < 2  # a token comes back every 0.5 s
    finally:
        server.stop()
