"""Caps and pacing against the real Redis (the test database)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import redis

from dialer import caps as capmod
from dialer.caps import Cap, Caps


@pytest.fixture()
def rds(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture()
def prefix() -> str:
    return f"zc:test:{secrets.token_hex(4)}"


def caps_of(prefix: str, **limits: int) -> list[Cap]:
    return [Cap(f"{prefix}:{name}", limit) for name, limit in limits.items()]


def test_acquire_is_all_or_nothing(rds: redis.Redis, prefix: str) -> None:
    caps = Caps(rds, lease_seconds=30)
    node, account = caps_of(prefix, node=3, account=1)
    assert caps.acquire("a", [node, account]) is None
    # the account is full: nothing is taken from the node either
    assert caps.acquire("b", [node, account]) == account
    assert caps.in_use(node.key) == 1 and caps.in_use(account.key) == 1
    assert rds.zscore(node.key, "b") is None
    # the same member again is not a second slot
    assert caps.acquire("a", [node, account]) is None
    assert caps.in_use(node.key) == 1
    caps.release("a", [node.key, account.key])
    assert caps.acquire("b", [node, account]) is None
    assert caps.in_use(account.key) == 1


def test_limit_is_never_exceeded(rds: redis.Redis, prefix: str) -> None:
    caps = Caps(rds, lease_seconds=30)
    (node,) = caps_of(prefix, node=5)
    taken = [m for m in (f"m{i}" for i in range(20)) if caps.acquire(m, [node]) is None]
    assert len(taken) == 5 and caps.in_use(node.key) == 5


def test_expiry_frees_slots(rds: redis.Redis, prefix: str) -> None:
    caps = Caps(rds, lease_seconds=1)
    (node,) = caps_of(prefix, node=2)
    assert caps.acquire("a", [node]) is None and caps.acquire("b", [node]) is None
    assert caps.acquire("c", [node]) == node
    deadline = time.monotonic() + 5
    while caps.acquire("c", [node]) is not None:  # the holder died: its leases run out
        assert time.monotonic() < deadline, "expired leases were never freed"
        time.sleep(0.1)
    assert caps.in_use(node.key) == 1


def test_renew_keeps_and_recreates_leases(rds: redis.Redis, prefix: str) -> None:
    caps = Caps(rds, lease_seconds=1)
    node, account = caps_of(prefix, node=1, account=1)
    assert caps.acquire("a", [node, account]) is None
    for _ in range(3):  # renewed: outlives its first expiry
        time.sleep(0.5)
        caps.renew({"a": [node.key, account.key]})
    assert caps.acquire("b", [node]) == node
    # Redis was flushed: renew puts the live attempt's leases back
    rds.delete(node.key, account.key)
    caps.renew({"a": [node.key, account.key]})
    assert caps.in_use(node.key) == 1 and caps.in_use(account.key) == 1
    assert caps.acquire("b", [node]) == node
    caps.renew({})  # nothing live: nothing to do


def test_key_names() -> None:
    assert capmod.node_cap("fs1", 3) == Cap("zc:cap:node:fs1", 3)
    assert capmod.account_cap("acc", 2).key == "zc:cap:acct:acc"
    assert capmod.campaign_cap("camp", 4).key == "zc:cap:camp:camp"
    assert capmod.number_cap("+923001234567") == Cap("zc:cap:num:+923001234567", 1)


def test_pacing_spaces_slots_across_two_clients(redis_url: str, prefix: str) -> None:
    cps = 20.0
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        pacers = [Caps(c, lease_seconds=30) for c in clients]
        gateway = f"{prefix}:gw"
        slots = []
        for i in range(10):
            t0 = time.time()
            wait = pacers[i % 2].pace(gateway, cps)
            assert wait >= 0
            slots.append(t0 + wait)
        gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
        # each slot is 1/cps after the one before, whichever client took it (small clock jitter)
        assert all(g >= 1 / cps - 0.01 for g in gaps), gaps
        assert pacers[0].pace(gateway, 0) == 0.0  # no pacing configured
    finally:
        for c in clients:
            c.delete(f"zc:cps:{prefix}:gw")
            c.close()
