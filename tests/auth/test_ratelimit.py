"""Rate limits per client IP, shared across instances through Firestore (two real auth processes), answering
429 with Retry-After; and shared.ratelimit against the emulator."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from shared.ratelimit import RateLimited, RateLimiter, Rule, client_ip
from tests.auth.xff_proxy import XffProxy
from tests.fixtures.auth import AuthService, start_auth

LOGIN_LIMIT = 4
VALIDATE_LIMIT = 6


@dataclass
class Pair:
    a: AuthService
    b: AuthService
    prefix: str


@pytest.fixture(scope="module")
def pair(shared_db_url: str, firestore_emulator_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    prefix = f"rl{uuid.uuid4().hex[:8]}_"
    env = {
        "FIRESTORE_COLLECTION_PREFIX": prefix,
        "RATE_LIMIT_PER_MINUTE": str(LOGIN_LIMIT),
        "VALIDATE_RATE_LIMIT_PER_MINUTE": str(VALIDATE_LIMIT),
    }
    local = tmp_path_factory.mktemp("rl")
    a = start_auth(shared_db_url, local, env, firestore_host=firestore_emulator_host)
    b = start_auth(shared_db_url, local, env, firestore_host=firestore_emulator_host)
    yield Pair(a, b, prefix)
    a.stop()
    b.stop()


def in_one_window(run: Callable[[str], Any], attempts: int = 3) -> Any:
    """Run ``run(client_ip)`` with a fresh client IP until it did not straddle a minute boundary (a new
    window would reset the count mid-test)."""
    for _ in range(attempts):
        ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}-{uuid.uuid4().hex[:6]}"
        window = int(time.time() // 60)
        result = run(ip)
        if int(time.time() // 60) == window:
            return result
    raise AssertionError("could not run within one rate-limit window")


def dev_login(service: AuthService, ip: str) -> httpx.Response:
    return httpx.post(
        f"{service.url}/auth/dev/login",
        json={"email": "limited@example.com"},
        headers={"X-Forwarded-For": ip},
        timeout=30,
    )


def test_login_limit_is_shared_across_instances(pair: Pair) -> None:
    def run(ip: str) -> None:
        statuses = [
            dev_login(pair.a, ip).status_code,
            dev_login(pair.a, ip).status_code,
            dev_login(pair.b, ip).status_code,
            dev_login(pair.b, ip).status_code,
        ]
        assert statuses == [200] * LOGIN_LIMIT
        limited = dev_login(pair.b, ip)
        assert limited.status_code == 429, "the fifth login is refused though instance b saw only two"
        error = limited.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["action"] == "login"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert dev_login(pair.a, ip).status_code == 429
        assert dev_login(pair.a, ip + "-other").status_code == 200, "limits are per client"

    in_one_window(run)


def test_refresh_and_token_are_limited(pair: Pair) -> None:
    def run(ip: str) -> None:
        statuses = [
            httpx.post(
                f"{pair.a.url}/auth/refresh", json={"refresh_token": "r" * 43}, headers={"X-Forwarded-For": ip}
            ).status_code
            for _ in range(LOGIN_LIMIT + 1)
        ]
        assert statuses == [401] * LOGIN_LIMIT + [429]
        statuses = [
            httpx.post(
                f"{pair.b.url}/auth/token",
                json={"code": "c" * 43, "code_verifier": "v" * 43},
                headers={"X-Forwarded-For": ip},
            ).status_code
            for _ in range(LOGIN_LIMIT + 1)
        ]
        assert statuses == [400] * LOGIN_LIMIT + [429]

    in_one_window(run)


def shared_count(firestore_client: Any, prefix: str, action: str, ip: str) -> int:
    window = int(time.time() // 60)
    digest = hashlib.sha256(ip.encode()).hexdigest()[:24]
    snap = firestore_client.collection(f"{prefix}rate_limits").document(f"{action}-{digest}-{window}").get()
    return int((snap.to_dict() or {}).get("count", 0))


def test_validate_limit_counts_locally_and_syncs_to_other_instances(pair: Pair, firestore_client: Any) -> None:
    def validate(service: AuthService, ip: str) -> int:
        return httpx.post(
            f"{service.url}/auth/validate", json={"token": "x.y.z"}, headers={"X-Forwarded-For": ip}
        ).status_code

    def wait_for_count(ip: str, expected: int) -> None:
        deadline = time.monotonic() + 30
        while shared_count(firestore_client, pair.prefix, "validate", ip) < expected:
            assert time.monotonic() < deadline, f"the shared count never reached {expected}"
            time.sleep(0.05)

    def run(ip: str) -> None:
        assert [validate(pair.a, ip) for _ in range(VALIDATE_LIMIT)] == [200] * VALIDATE_LIMIT
        assert validate(pair.a, ip) == 429, "over the limit on one instance: refused at once"
        wait_for_count(ip, VALIDATE_LIMIT + 1)  # a synced all its hits
        assert validate(pair.b, ip) == 200, "b has not synced yet: it only knows its own hit"
        wait_for_count(ip, VALIDATE_LIMIT + 2)  # b synced, and learned the shared total
        # b refuses within a hit or two (its own count stays far below the limit): the count is shared.
        statuses = []
        while 429 not in statuses:
            assert len(statuses) < 3, f"b did not learn a's hits: {statuses}"
            statuses.append(validate(pair.b, ip))
            time.sleep(0.05)

    in_one_window(run)


class FailingStore:
    def increment(self, bucket: str, amount: int, expires_at: datetime) -> int:
        raise ConnectionError("firestore unreachable")


def test_limiter_counts_in_firestore_and_degrades_to_local_counting(firestore_client: Any) -> None:
    rule = Rule("unit", limit=3)
    one, two = RateLimiter(), RateLimiter()  # two instances, one shared count
    key = f"client-{uuid.uuid4().hex}"
    one.hit(rule, key)
    two.hit(rule, key)
    one.hit(rule, key)
    with pytest.raises(RateLimited) as info:
        two.hit(rule, key)
    assert info.value.status == 429 and 1 <= int(info.value.headers["Retry-After"]) <= 60
    assert "client-" not in str(
        sorted(d.id for d in firestore_client.collection(f"{firestore_client_prefix()}rate_limits").list_documents())
    ), "document ids hold no raw client keys"

    down = RateLimiter(FailingStore())
    for _ in range(3):
        down.hit(rule, key)
    with pytest.raises(RateLimited):
        down.hit(rule, key)


def firestore_client_prefix() -> str:
    import os

    return os.environ.get("FIRESTORE_COLLECTION_PREFIX", "")


def test_client_ip_trusts_only_the_proxies_it_is_told_about() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.0.0.1"}  # spoofed, client, load balancer
    assert client_ip(headers, "10.9.9.9", 2) == "203.0.113.9"
    assert client_ip(headers, "10.9.9.9", 1) == "10.0.0.1"
    assert client_ip(headers, "10.9.9.9", 0) == "10.9.9.9"
    assert client_ip({}, "10.9.9.9", 1) == "10.9.9.9"
    assert client_ip({"X-Forwarded-For": "203.0.113.9"}, None, 2) == "203.0.113.9"


def test_two_hop_chain_limits_each_client_separately(
    shared_db_url: str, firestore_emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 15, finding 2: behind the load balancer (two appending proxies: the front end appends the
    client's address, the load balancer its own), auth with TRUSTED_PROXY_HOPS=2 counts each client on its
    own, and a spoofed first X-Forwarded-For entry changes nothing. With the old default of 1 it counted the
    load balancer, and one client's requests locked out every other client."""
    limit = 3
    auth = start_auth(
        shared_db_url,
        tmp_path_factory.mktemp("xff"),
        {
            "FIRESTORE_COLLECTION_PREFIX": f"xff{uuid.uuid4().hex[:8]}_",
            "RATE_LIMIT_PER_MINUTE": str(limit),
            "TRUSTED_PROXY_HOPS": "2",
        },
        firestore_host=firestore_emulator_host,
    )
    balancer = XffProxy(auth.url, source_address="127.0.0.1").start()  # appends the front end's address
    front_end = XffProxy(balancer.url, source_address="127.0.0.9").start()  # appends the client's address

    def login(client_address: str, spoofed: str | None = None) -> int:
        transport = httpx.HTTPTransport(local_address=client_address)
        with httpx.Client(transport=transport, trust_env=False, timeout=30) as client:
            headers = {"X-Forwarded-For": spoofed} if spoofed else {}
            return client.post(
                f"{front_end.url}/auth/dev/login", json={"email": "chain@example.com"}, headers=headers
            ).status_code

    def run(_: str) -> None:
        a, b, c = (f"127.{uuid.uuid4().int % 200 + 20}.{n}.{uuid.uuid4().int % 250 + 2}" for n in (1, 2, 3))
        assert [login(a, spoofed=f"203.0.113.{i}") for i in range(limit)] == [200] * limit
        assert login(a) == 429, "client a is over its limit"
        assert login(a, spoofed="198.51.100.77") == 429, "a new spoofed first entry does not reset the count"
        assert login(b) == 200, "client b is counted on its own"
        assert login(c, spoofed=a) == 200, "claiming a's address in X-Forwarded-For does not make c count as a"

    try:
        in_one_window(run)
    finally:
        front_end.stop()
        balancer.stop()
        auth.stop()


def test_logout_and_tickets_are_rate_limited(pair: Pair) -> None:
    """Issue 15, finding 7: /auth/logout, /auth/ws-ticket and /auth/ws-ticket/redeem had no limit. logout
    counts like sign-in (RATE_LIMIT_PER_MINUTE); tickets like validate (VALIDATE_RATE_LIMIT_PER_MINUTE: a
    bridge instance redeems every user's tickets from one address)."""

    def run(ip: str) -> None:
        headers = {"X-Forwarded-For": ip}
        logouts = [
            httpx.post(f"{pair.a.url}/auth/logout", json={"refresh_token": "r" * 43}, headers=headers).status_code
            for _ in range(LOGIN_LIMIT + 1)
        ]
        assert logouts == [200] * LOGIN_LIMIT + [429], logouts
        for path, body in (("/auth/ws-ticket", None), ("/auth/ws-ticket/redeem", {"ticket": "t" * 32})):
            statuses = [
                httpx.post(f"{pair.b.url}{path}", json=body, headers=headers).status_code
                for _ in range(VALIDATE_LIMIT + 1)
            ]
            assert statuses[:VALIDATE_LIMIT] == [401] * VALIDATE_LIMIT and statuses[-1] == 429, (path, statuses)

    in_one_window(run)
