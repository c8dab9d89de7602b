"""Redis flushed or unreachable, the database unreachable, while calls are live: the caps still
hold on the switch (counted from the simulator's own call log), no number gets two channels,
no claimed attempt is lost, and no cap slot leaks.

Outages are made with a TCP proxy between one dialer process and the service (``TcpProxy``):
cutting it drops that process's connections and refuses new ones, as a stopped server would,
while the test and the other processes still reach the service.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from core.redis_keys import cap_key
from tests.e2e.conftest import (
    Stack,
    assert_sim_no_overlap,
    live_channels,
    max_live,
    sim_rows_of,
    wait_for,
)


def _account_rows(rows: list[dict[str, Any]], call_ids: list[str]) -> list[dict[str, Any]]:
    return [r for call_id in call_ids for r in sim_rows_of(rows, call_id)]


def test_redis_flush_during_live_calls_keeps_the_account_cap_and_one_channel_per_number(
        stack: Stack, make_tenant: Any, upload: Any) -> None:
    """Account cap 2: two calls of the account are live, one on each of two dialers (two nodes;
    the second node has room for more), more calls are due, one of them to a number already on a
    live channel; Redis is flushed while the first dialer is frozen for a moment (it cannot
    restore its lease yet). New calls must wait until both live calls' leases are back: never
    more than 2 channels of the account, never two to one number.

    Old code: after a flush the caps counted nothing; the next sweep let new calls in next to the
    live ones, and a second channel went to a number already up. Before this test: a dialer waited
    only for the dialers of its own node to restore their leases, so the second node granted a
    third call while the first node's lease was still missing."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant, balance="5000", max_concurrent_calls=2)
    audio = upload(tenant, seconds=120)  # 6 s of real time: up through the flush and the pause
    short = upload(tenant, seconds=20)
    first = stack.dialer(sim, node=f"{stack.node}-a", NODE_MAX_CHANNELS=1)
    live = [stack.place(tenant, audio, "0")]
    stack.wait_status(live[0].call_id, "ANSWERED")
    stack.dialer(sim, node=f"{stack.node}-b", NODE_MAX_CHANNELS=5)
    live.append(stack.place(tenant, audio, "0"))  # the first node is full: the second dials it
    stack.wait_status(live[1].call_id, "ANSWERED")
    assert {stack.attempts(p.call_id)[0].node for p in live} == {f"{stack.node}-a", f"{stack.node}-b"}
    due = [stack.place(tenant, short, "6") for _ in range(3)]
    same_number = stack.client.post("/api/v1/calls", headers=tenant.headers, json={
        "phone_number": "0" + live[0].phone[3:], "audio_id": short, "max_retries": 0})
    assert same_number.status_code == 201, same_number.get_json()
    first.pause()
    try:
        stack.redis.flushdb()
        time.sleep(1.5)  # the second dialer sweeps several times meanwhile (within the epoch's grace)
    finally:
        first.resume()
    ids = [p.call_id for p in [*live, *due]] + [same_number.get_json()["id"]]
    stack.wait_final(ids, timeout=60)

    rows = _account_rows(sim.logged_calls(), ids)
    assert len(rows) == len(ids)
    assert max_live(rows) == 2, f"{max_live(rows)} channels of an account capped at 2"
    assert_sim_no_overlap(rows)
    for call_id in ids:
        assert stack.status(call_id) == "COMPLETED"
        stack.assert_money(call_id)
    stack.assert_books_balance(tenant.account_id)


def test_redis_cut_between_claim_and_originate_loses_no_attempt(stack: Stack, make_tenant: Any,
                                                                upload: Any) -> None:
    """A batch is claimed (money reserved, calls DIALING) and waits for its pacing slots when the
    dialer loses Redis. Every claimed attempt is still originated at its slot; the calls not yet
    claimed wait for Redis; afterwards every call was dialed once and COMPLETED with no retry
    used and no attempt without a channel.

    Old code: each claimed attempt took its cap and pacing slots from Redis right before its
    originate; with Redis unreachable it stayed claimed and reserved but was never dialed, then
    the reconciler ended it as lost: a retry used up (or the call FAILED) for a call that never
    rang."""
    sim = stack.simulator()
    proxy, url = stack.proxy_to_redis()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=20)  # 1 s of real time
    placed = [stack.place(tenant, audio, "6", max_retries=1) for _ in range(8)]
    ids = [p.call_id for p in placed]
    for call_id in ids:
        stack.set_call(call_id, retry_delay_seconds=0)
    dialer = stack.dialer(sim, REDIS_URL=url, GATEWAY_CPS=2, DIALER_OWNER_STALE_SECONDS=3, CDR_WAIT_SECONDS=3)

    def batch_waiting() -> list[Any]:
        up = live_channels(sim)
        return [a for a in stack.owned_by(dialer) if a.id not in up]

    waiting = wait_for("a claimed batch waiting for its pacing slots", batch_waiting)
    proxy.cut()
    for attempt in waiting:  # each claimed attempt still goes out at its slot, without Redis
        wait_for(f"attempt {attempt.id} to be originated",
                 lambda attempt=attempt: attempt.id in live_channels(sim)
                 or any(r["uuid"] == attempt.id for r in sim.logged_calls()))
    time.sleep(1.0)  # Redis stays away a while longer
    assert any(stack.status(i) == "QUEUED" for i in ids)  # nothing new was claimed without Redis
    proxy.restore()
    stack.wait_final(ids, timeout=40)

    rows = sim.logged_calls()
    assert all(n == 1 for n in Counter(r["uuid"] for r in rows).values())
    for p in placed:
        call = stack.call(p.call_id)
        attempts = stack.attempts(p.call_id)
        assert (call.status, call.attempts_count, call.last_cause) == ("COMPLETED", 1, "NORMAL_CLEARING"), p
        assert [a.id for a in attempts] == [r["uuid"] for r in sim_rows_of(rows, p.call_id)]
        stack.assert_money(p.call_id)
    assert dialer.alive()
    stack.assert_books_balance(tenant.account_id)


def test_sql_outage_longer_than_the_lease_keeps_the_leases_of_live_calls(stack: Stack, make_tenant: Any,
                                                                         upload: Any) -> None:
    """The dialer loses its database for over two lease periods while two calls of an account capped
    at 2 are live. Their leases stay (renewed without SQL), so a second dialer on another node
    (with its database) does not dial the account's third call; after the outage the calls end,
    the third is dialed, and every cap is back to zero: nothing leaked.

    Old code: leases were renewed by the loop that also wrote to SQL; with the database away the
    renewals stopped, the leases of the live calls expired, the other dialer dialed a third call
    next to them; and leases re-added after the outage for calls that had ended meanwhile were
    never taken back (the cap stayed counted above the live calls)."""
    lease = 3
    sim = stack.simulator()
    proxy, url = stack.proxy_to_sql()
    tenant = stack.tenant(make_tenant, max_concurrent_calls=2)
    audio = upload(tenant, seconds=260)  # 13 s of real time: up through the whole outage
    stack.dialer(sim, DATABASE_URL=url, CAP_LEASE_SECONDS=lease)
    live = [stack.place(tenant, audio, "0") for _ in range(2)]
    for p in live:
        stack.wait_status(p.call_id, "ANSWERED")
    short = upload(tenant, seconds=2)
    third = stack.place(tenant, short, "6")
    stack.dialer(sim, node=f"{stack.node}-b", CAP_LEASE_SECONDS=lease)
    acct = cap_key("acct", tenant.account_id)
    numbers = [cap_key("num", p.phone) for p in live]

    proxy.cut()
    until = time.monotonic() + 2 * lease + 1
    while time.monotonic() < until:
        assert stack.in_use(acct) == 2, "a live call's lease expired during the outage"
        assert all(stack.in_use(key) == 1 for key in numbers)
        assert stack.status(third.call_id) == "QUEUED"
        time.sleep(0.2)
    assert sim.stats()["current"] == 2  # the calls were up through the whole outage
    proxy.restore()

    ids = [p.call_id for p in [*live, third]]
    stack.wait_final(ids, timeout=40)
    rows = _account_rows(sim.logged_calls(), ids)
    assert max_live(rows) == 2
    for call_id in ids:
        assert stack.status(call_id) == "COMPLETED"
        stack.assert_money(call_id)
    node_keys = [cap_key("node", stack.node), cap_key("node", f"{stack.node}-b")]
    wait_for("every cap slot to be free again", lambda: all(
        stack.in_use(key) == 0 for key in [acct, *numbers, *node_keys]))
    stack.assert_books_balance(tenant.account_id)
