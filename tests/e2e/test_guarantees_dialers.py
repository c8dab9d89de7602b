"""Guarantees that involve more than one dialer process, or more than one account: an
overlapping restart on one node, pacing shared by two dialers on one gateway, and fair
dispatch between an account held at its cap and another account.

The simulator's own call log (every channel it had, with its ``zc_call_id`` and its own times)
is the ground truth each test checks SQL against.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.e2e.conftest import (
    TIME_SCALE,
    Stack,
    assert_sim_no_overlap,
    live_channels,
    sim_rows_of,
    wait_for,
)
from tests.e2e.test_outcomes import EXPECTED


def test_overlapping_restart_never_ends_the_other_dialers_attempts(stack: Stack, make_tenant: Any,
                                                                     upload: Any) -> None:
    """Two dialer processes on one node: the new one starts while the old one still has attempts
    claimed and waiting for their pacing slots (slow originates: 1 per second) and attempts live
    on the switch; then the old one is stopped.

    Old code: a dialer that (re)connected reconciled every open attempt of its node against the
    switch and ended those without a channel, the other process's claimed-but-not-yet-originated
    ones included; their calls were queued again and dialed by the newcomer while the old
    process originated them too (two channels to one number, an answered call charged twice).
    And a dialer stopped with attempts still waiting for their slots left them claimed: they
    ended FAILED (lost / OUTCOME_UNKNOWN) without ever being dialed."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant, balance="5000")
    audio = upload(tenant, seconds=40)  # 2 s of real time
    digits = "6216061626"
    placed = [stack.place(tenant, audio, d) for d in digits]  # all due before any dialer runs
    ids = [p.call_id for p in placed]
    env = {"GATEWAY_CPS": 1, "DIALER_OWNER_STALE_SECONDS": 3, "CDR_WAIT_SECONDS": 3}
    old = stack.dialer(sim, **env)

    def claimed_and_live() -> bool:
        up = live_channels(sim)
        mine = stack.owned_by(old)
        return any(a.id in up for a in mine) and any(a.id not in up for a in mine)

    wait_for("the first dialer to have a call up and another claimed, waiting for its slot", claimed_and_live)
    new = stack.dialer(sim, **env)  # the overlapping start
    wait_for("the new dialer to dial", lambda: stack.owned_by(new, open_only=False))
    waiting: list[str] = []

    def old_has_one_waiting() -> bool:
        up = live_channels(sim)
        waiting[:] = [a.id for a in stack.owned_by(old) if a.id not in up]
        return bool(waiting)

    wait_for("the first dialer to hold a claimed attempt not yet originated", old_has_one_waiting)
    old.stop()  # SIGTERM while that attempt waits for its slot (and others may be up)
    assert not old.alive()
    stack.wait_final(ids, timeout=60)
    wait_for("the switch to have no channel left", lambda: sim.stats()["current"] == 0)

    rows = sim.logged_calls()
    assert_sim_no_overlap(rows)
    assert all(n == 1 for n in Counter(r["uuid"] for r in rows).values()), "an attempt was originated twice"
    for p in placed:
        status, _, _, answered = EXPECTED[p.digit]
        call = stack.call(p.call_id)
        attempts = stack.attempts(p.call_id)
        channels = sim_rows_of(rows, p.call_id)
        # each call dialed exactly once, by the attempt SQL has, and judged from its own channel
        assert [a.id for a in attempts] == [r["uuid"] for r in channels], (p, len(attempts), len(channels))
        assert (call.status, call.attempts_count, call.last_cause) == (status, 1, channels[0]["cause"]), p
        assert attempts[0].hangup_cause == channels[0]["cause"]
        assert len(stack.charges(p.call_id)) == (1 if answered else 0), p
        stack.assert_money(p.call_id)
    owners = {a.owner.split(":")[2] for p in placed for a in stack.attempts(p.call_id)}
    assert owners == {str(old.pid), str(new.pid)}, owners  # both processes dialed
    stack.assert_books_balance(tenant.account_id)


def test_pacing_holds_across_two_dialers_on_one_gateway(stack: Stack, make_tenant: Any, upload: Any) -> None:
    """Two dialers share the gateway's calls-per-second: the switch sees originates 1/cps apart
    (within scheduling jitter), also when slots were handed out more than a second ahead.

    Old code: the gateway's "next free slot" key expired one second after it was written, even
    when the slots it had handed out reached further ahead; the other dialer then got a slot at
    once, between them: two originates closer than 1/cps."""
    cps = 2.0
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    placed = [stack.place(tenant, audio, "2") for _ in range(12)]  # busy: the channel is gone at once
    for name in ("a", "b"):
        stack.dialer(sim, node=f"{stack.node}-{name}", GATEWAY_CPS=cps)
    stack.wait_final([p.call_id for p in placed], timeout=40)
    nodes = Counter(a.node for p in placed for a in stack.attempts(p.call_id))
    assert len(nodes) == 2, nodes  # both dialers originated
    starts = sorted(r["start"] for r in sim.logged_calls())
    assert len(starts) == len(placed)
    gap = TIME_SCALE / cps  # simulated seconds between two pacing slots
    # an originate sent late (a loaded machine) shortens the gap to the next one: allow 40 % of a
    # gap (200 ms of real time), far from the old code's overlapping slots (25 ms apart)
    jitter = 0.4 * gap
    gaps = [round(b - a, 2) for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= gap - jitter, f"originates {min(gaps) / TIME_SCALE:.3f} s apart at {cps}/s: {gaps}"
    stack.assert_books_balance(tenant.account_id)


def test_account_at_its_cap_does_not_hold_up_another_accounts_call(stack: Stack, make_tenant: Any,
                                                                     upload: Any) -> None:
    """One account is held at its own concurrency cap (1) with a backlog of 150 due single calls;
    another account's call placed afterwards is dialed while the first account's call is still
    up, and the backlog stays behind its cap.

    Old code: the dispatcher read the oldest due calls of every account in one batch and offered
    them to the caps in that order; the capped account's backlog filled every batch, so the
    other account's call waited until the backlog had been dialed."""
    sim = stack.simulator()
    busy = stack.tenant(make_tenant, balance="10000", max_concurrent_calls=1)
    long_audio = upload(busy, seconds=290)  # 14.5 s of real time: it stays up for the whole test
    backlog = [stack.place(busy, long_audio, "0") for _ in range(150)]
    other = stack.tenant(make_tenant)
    short_audio = upload(other, seconds=2)
    stack.dialer(sim)
    wait_for("the capped account's first call to be up", lambda: sim.stats()["current"] == 1)
    quick = stack.place(other, short_audio, "6")
    stack.wait_status(quick.call_id, "COMPLETED", timeout=15)

    rows = sim.logged_calls()
    (row,) = sim_rows_of(rows, quick.call_id)
    assert row["answered"]
    # the capped account's first call is still up: the other account did not wait for it
    dialed = [p for p in backlog if stack.attempts(p.call_id)]
    assert len(dialed) == 1, len(dialed)
    assert stack.status(dialed[0].call_id) == "ANSWERED"
    assert sim.stats()["current"] == 1
    stack.cancel(busy, dialed[0].call_id)
    stack.wait_final([dialed[0].call_id])
    stack.assert_books_balance(other.account_id)
