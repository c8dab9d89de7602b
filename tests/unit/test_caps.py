"""Caps and pacing against the real Redis (the test database)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest
import redis

from core.redis_keys import EPOCH_KEY
from dialer import caps as capmod
from dialer.caps import Cap, Caps, EpochChanged, Lease


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


def ready(caps: Caps, holder: str = "h", leases: list[Lease] | None = None) -> Caps:
    assert caps.sync_epoch(holder, lambda: leases or [])
    return caps


def acquire(caps: Caps, member: str, cap_list: list[Cap]) -> bool:
    return bool(caps.grant([(member, cap_list)], "gw-none", 0))


def test_grant_is_all_or_nothing_per_call(rds: redis.Redis, prefix: str) -> None:
    caps = ready(Caps(rds, lease_seconds=30))
    node, account = caps_of(prefix, node=3, account=1)
    assert acquire(caps, "a", [node, account])
    # the account is full: nothing is taken from the node either
    assert not acquire(caps, "b", [node, account])
    assert caps.in_use([node.key, account.key]) == [1, 1]
    assert rds.zscore(node.key, "b") is None
    # the same member again is not a second slot
    assert acquire(caps, "a", [node, account])
    assert caps.in_use([node.key]) == [1]
    caps.release([Lease("a", (node.key, account.key))])
    assert acquire(caps, "b", [node, account])


def test_a_batch_is_granted_in_order_within_the_limits(rds: redis.Redis, prefix: str) -> None:
    caps = ready(Caps(rds, lease_seconds=30))
    node, account = caps_of(prefix, node=5, account=3)
    number = Cap(f"{prefix}:num", 1)
    offers = [(f"m{i}", [node, account] + ([number] if i in (0, 1) else [])) for i in range(8)]
    granted = caps.grant(offers, f"{prefix}-gw", 0)
    # m1 shares m0's number: refused; the account then takes m2 and m3 and is full
    assert [i for i, _ in granted] == [0, 2, 3]
    assert caps.in_use([node.key, account.key, number.key]) == [3, 3, 1]


def test_limit_is_never_exceeded(rds: redis.Redis, prefix: str) -> None:
    caps = ready(Caps(rds, lease_seconds=30))
    (node,) = caps_of(prefix, node=5)
    taken = [m for m in (f"m{i}" for i in range(20)) if acquire(caps, m, [node])]
    assert len(taken) == 5 and caps.in_use([node.key]) == [5]


def test_expiry_frees_slots(rds: redis.Redis, prefix: str) -> None:
    caps = ready(Caps(rds, lease_seconds=1))
    (node,) = caps_of(prefix, node=2)
    assert acquire(caps, "a", [node]) and acquire(caps, "b", [node])
    assert not acquire(caps, "c", [node])
    deadline = time.monotonic() + 5
    while not acquire(caps, "c", [node]):  # the holder died: its leases run out
        assert time.monotonic() < deadline, "expired leases were never freed"
        time.sleep(0.1)
    assert caps.in_use([node.key]) == [1]


def test_renew_keeps_and_recreates_leases(rds: redis.Redis, prefix: str) -> None:
    caps = ready(Caps(rds, lease_seconds=1))
    node, account = caps_of(prefix, node=1, account=1)
    lease = Lease("a", (node.key, account.key))
    assert acquire(caps, "a", [node, account])
    for _ in range(3):  # renewed: outlives its first expiry
        time.sleep(0.5)
        caps.renew([lease])
    assert not acquire(caps, "b", [node])
    rds.delete(node.key, account.key)  # lost: renew puts the live attempt's leases back
    caps.renew([lease])
    assert caps.in_use([node.key, account.key]) == [1, 1]
    assert not acquire(caps, "b", [node])
    caps.renew([])  # nothing live: nothing to do


def test_a_flush_restores_every_live_lease_before_any_new_grant(redis_url: str, prefix: str) -> None:
    """Two dialers hold two calls of an account capped at 2; Redis is flushed. No new call may be
    let in until both dialers have put their live calls back."""
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        clients[0].delete(EPOCH_KEY)  # a new epoch, as after a first start
        (account,) = caps_of(prefix, account=2)
        leases = [Lease("a@one", (account.key,)), Lease("b@two", (account.key,))]
        one, two = Caps(clients[0], 30, grace_seconds=30), Caps(clients[1], 30, grace_seconds=30)
        both = lambda: {"one", "two"}  # noqa: E731  (the SQL registry of live dialers)
        assert one.sync_epoch("one", lambda: [leases[0]], both) is False  # "two" has not restored yet
        assert two.sync_epoch("two", lambda: [leases[1]], both) is True
        assert one.sync_epoch("one", lambda: [leases[0]], both) is True
        assert acquire(one, "a@one", [account]) and acquire(two, "b@two", [account])
        clients[0].flushdb()
        # one grants under the old epoch: refused, nothing taken
        with pytest.raises(EpochChanged):
            acquire(one, "c@one", [account])
        assert one.sync_epoch("one", lambda: [leases[0]], both) is False
        with pytest.raises(EpochChanged):  # two has not put its call back yet
            acquire(one, "c@one", [account])
        assert two.sync_epoch("two", lambda: [leases[1]], both) is True
        assert one.sync_epoch("one", lambda: [leases[0]], both) is True
        assert caps_in_use(one, account) == 2
        assert not acquire(one, "c@one", [account])  # the cap holds after the flush
        assert one.flushes_seen == 1 and two.flushes_seen == 1
    finally:
        for c in clients:
            c.close()


def caps_in_use(caps: Caps, cap: Cap) -> int:
    return caps.in_use([cap.key])[0]


def test_key_names() -> None:
    assert capmod.node_cap("fs1", 3) == Cap("zc:cap:node:fs1", 3)
    assert capmod.account_cap("acc", 2).key == "zc:cap:acct:acc"
    assert capmod.campaign_cap("camp", 4).key == "zc:cap:camp:camp"
    assert capmod.number_cap("+923001234567") == Cap("zc:cap:num:+923001234567", 1)


def test_pacing_spaces_slots_across_two_clients(redis_url: str, prefix: str) -> None:
    """Slots are 1/cps apart whichever dialer takes them, also for slots handed out more than a
    second ahead (the clock outlives its last slot)."""
    cps = 20.0
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        pacers = [ready(Caps(c, lease_seconds=30)) for c in clients]
        gateway = f"{prefix}-gw"
        slots = []
        for i in range(6):
            t0 = time.time()
            batch = pacers[i % 2].grant([(f"m{i}-{j}", []) for j in range(10)], gateway, cps)
            slots += [t0 + wait for _, wait in batch]
        assert len(slots) == 60  # 3 s worth of slots, handed out at once
        slots.sort()
        gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
        assert all(g >= 1 / cps - 0.01 for g in gaps), gaps
        assert pacers[0].grant([("x", [])], f"{prefix}-other", 0) == [(0, 0.0)]  # no pacing configured
    finally:
        for c in clients:
            c.delete(f"zc:cps:{gateway}")
            c.close()
