"""Caps across dialer processes: node channels and account concurrency hold with two
dialers sharing one switch and one Redis; leases of a killed dialer expire."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.models import Account
from tests.e2e.conftest import Stack, wait_for


def test_node_cap_holds_across_two_dialers(stack: Stack, make_tenant: Any, upload: Any) -> None:
    cap = 3
    sim = stack.simulator()
    for _ in range(2):  # two processes for the same FreeSWITCH node
        stack.dialer(sim, NODE_MAX_CHANNELS=cap)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=20)  # 1 s of real time per answered call
    placed = [stack.place(tenant, audio, "6" if i % 2 else "0") for i in range(3 * cap + 1)]
    stack.wait_final([p.call_id for p in placed], timeout=60)
    stats = sim.stats()
    assert stats["max_concurrent"] <= cap, stats["max_concurrent"]
    assert stats["max_concurrent"] == cap  # the cap was actually reached, so it was tested
    for p in placed:
        assert stack.status(p.call_id) == "COMPLETED"
        assert stack.call(p.call_id).attempts_count == 1
    # both processes dialed
    nodes_pids = {d.pid for d in stack.dialers}
    assert len(nodes_pids) == 2
    stack.assert_books_balance(tenant.account_id)


def test_account_cap_holds_across_two_dialers(stack: Stack, make_tenant: Any, upload: Any) -> None:
    # each node can carry 2 channels, the account 3: reaching 3 at once needs both dialers,
    # and the total never passing 3 (with room for 4) is the account cap holding across them
    limit = 3
    sim = stack.simulator()
    stack.dialer(sim, node=f"{stack.node}-a", NODE_MAX_CHANNELS=2)
    stack.dialer(sim, node=f"{stack.node}-b", NODE_MAX_CHANNELS=2)
    tenant = stack.tenant(make_tenant)
    with stack.sql.begin() as conn:
        conn.execute(sa.update(Account).where(Account.id == tenant.account_id)
                     .values(max_concurrent_calls=limit))
    audio = upload(tenant, seconds=20)
    placed = [stack.place(tenant, audio, "6") for _ in range(3 * limit)]
    stack.wait_final([p.call_id for p in placed], timeout=60)
    stats = sim.stats()
    assert stats["max_concurrent"] == limit, stats["max_concurrent"]
    assert all(stack.status(p.call_id) == "COMPLETED" for p in placed)
    nodes = {a.node for p in placed for a in stack.attempts(p.call_id)}
    assert nodes == {f"{stack.node}-a", f"{stack.node}-b"}  # both dialers took calls
    stack.assert_books_balance(tenant.account_id)


def test_killed_dialer_leaks_no_leases(stack: Stack, make_tenant: Any, upload: Any) -> None:
    lease = 3
    sim = stack.simulator()
    dialer = stack.dialer(sim, CAP_LEASE_SECONDS=lease, DIALER_OWNER_STALE_SECONDS=3)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=240)  # stays up for 12 s of real time
    placed = [stack.place(tenant, audio, "0") for _ in range(3)]
    for p in placed:
        stack.wait_status(p.call_id, "ANSWERED")
    node_key, account_key = f"zc:cap:node:{stack.node}", f"zc:cap:acct:{tenant.account_id}"
    assert stack.in_use(node_key) == 3 and stack.in_use(account_key) == 3
    dialer.kill9()
    wait_for("the killed dialer's leases to expire",
             lambda: stack.in_use(node_key) == 0 and stack.in_use(account_key) == 0, timeout=lease + 10)
    # a new dialer for the node adopts the channels that are still up (once the killed one's
    # heartbeat is stale) and leases them again
    stack.dialer(sim, CAP_LEASE_SECONDS=lease, DIALER_OWNER_STALE_SECONDS=3)
    wait_for("the new dialer to lease the live calls", lambda: stack.in_use(node_key) == 3)
    for p in placed:
        stack.cancel(tenant, p.call_id)
    stack.wait_final([p.call_id for p in placed])
    wait_for("leases released", lambda: stack.in_use(node_key) == 0 and stack.in_use(account_key) == 0)
    for p in placed:
        assert stack.status(p.call_id) == "CANCELLED"
        stack.assert_money(p.call_id)
    stack.assert_books_balance(tenant.account_id)
