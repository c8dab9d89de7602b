"""A cancel that arrives before the channel exists, and calls that would never end by themselves.

The simulator's call log is the ground truth: what was originated, answered, and for how long.
"""

from __future__ import annotations

import time
import wave
from decimal import Decimal
from typing import Any

from billing.rating import call_cost
from dialer.engine import LIMIT_MARGIN_SECONDS
from tests.e2e.conftest import TIME_SCALE, Stack, live_channels, sim_rows_of, wait_for


def test_cancel_while_the_attempt_waits_for_its_pacing_slot_never_dials(stack: Stack, make_tenant: Any,
                                                                         upload: Any) -> None:
    """The call is claimed (DIALING, money reserved) but its originate waits for its pacing slot,
    so no channel exists when the cancel comes: it ends CANCELLED and is never originated.

    Old code: the cancel sent uuid_kill for a channel that did not exist yet ("-ERR No such
    channel") and forgot about it; at its slot the originate went out and the whole message
    played (COMPLETED, charged in full)."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=40)
    stack.dialer(sim, GATEWAY_CPS=0.5)  # one originate every 2 s
    first = stack.place(tenant, audio, "6")
    stack.wait_status(first.call_id, "DIALING", "RINGING", "ANSWERED", "COMPLETED")
    second = stack.place(tenant, audio, "6")

    def waiting() -> bool:
        attempts = stack.attempts(second.call_id)
        return bool(attempts) and stack.status(second.call_id) == "DIALING" and \
            attempts[0].id not in live_channels(sim) and not sim_rows_of(sim.logged_calls(), second.call_id)

    wait_for("the second call to be claimed and waiting for its pacing slot", waiting)
    stack.cancel(tenant, second.call_id)
    call = stack.wait_status(second.call_id, "CANCELLED", timeout=15)
    # the slot it had has passed once a call placed after it has been dialed
    third = stack.place(tenant, audio, "6")
    stack.wait_final([first.call_id, third.call_id], timeout=30)

    assert sim_rows_of(sim.logged_calls(), second.call_id) == []  # never originated
    (attempt,) = stack.attempts(second.call_id)
    assert attempt.ended_at is not None and attempt.answered_at is None
    assert (call.last_cause, call.attempts_count, Decimal(call.cost)) == ("CANCELLED_BY_USER", 1, 0)
    assert stack.charges(second.call_id) == []
    assert stack.status(third.call_id) == "COMPLETED"
    stack.assert_books_balance(tenant.account_id)


def test_cancel_around_the_originate_never_plays_the_message_in_full(stack: Stack, make_tenant: Any,
                                                                      upload: Any) -> None:
    """Cancels land at every moment around the originate: queued, claimed and waiting for the slot,
    originate in flight, ringing, just answered. Every call ends CANCELLED; on the switch each was
    either never originated or hung up before its message ended; none is charged for a full message.

    Old code: a cancel that arrived between the claim and the channel's creation was lost, and
    the message played in full."""
    seconds = 60  # 3 s of real time
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=seconds)
    stack.dialer(sim, GATEWAY_CPS=4)  # originates 0.25 s apart: most calls wait a little for their slot
    placed = [stack.place(tenant, audio, "6") for _ in range(8)]
    for p in placed:
        time.sleep(0.15)  # each cancel a little later in its call's life than the one before
        stack.cancel(tenant, p.call_id)
    ids = [p.call_id for p in placed]
    stack.wait_final(ids, timeout=30)
    wait_for("the switch to have no channel left", lambda: sim.stats()["current"] == 0)

    rows = sim.logged_calls()
    full = call_cost(seconds, Decimal(stack.account(tenant.account_id).rate_per_minute),
                     stack.account(tenant.account_id).pulse_seconds)
    for p in placed:
        call = stack.call(p.call_id)
        assert call.status == "CANCELLED", (p, call.status)
        for row in sim_rows_of(rows, p.call_id):
            assert row["end"] is not None
            if row["answer"] is not None:
                assert row["end"] - row["answer"] < seconds, f"call {p.call_id}: the message played in full"
        assert Decimal(call.cost) < full
        assert len(stack.charges(p.call_id)) <= 1
        stack.assert_money(p.call_id)
    stack.assert_books_balance(tenant.account_id)


def test_answered_call_ends_with_its_message(stack: Stack, make_tenant: Any, upload: Any) -> None:
    """A callee that answers and never hangs up (digit 0): the call ends when the short message
    has played, COMPLETED, charged once for what it lasted."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=4)
    stack.dialer(sim)
    placed = stack.place(tenant, audio, "0")
    call = stack.wait_status(placed.call_id, "COMPLETED", timeout=4 / TIME_SCALE + LIMIT_MARGIN_SECONDS + 10)
    (row,) = sim_rows_of(sim.logged_calls(), placed.call_id)
    assert row["answered"] and row["end"] - row["answer"] <= 4 + 1
    (attempt,) = stack.attempts(placed.call_id)
    assert attempt.billsec == row["billsec"] and call.last_cause == "NORMAL_CLEARING"
    assert len(stack.charges(placed.call_id)) == 1
    stack.assert_money(placed.call_id)
    stack.assert_books_balance(tenant.account_id)


def test_call_the_switch_does_not_end_is_cut_at_its_limit(stack: Stack, make_tenant: Any, upload: Any) -> None:
    """The callee answers and never hangs up, and the switch does not end the call either: the
    file it plays runs far longer than the message the dialer knows (what a playback stalled by
    missing media looks like from the dialer). The dialer hangs the call up at message +
    LIMIT_MARGIN_SECONDS with cause ALLOTTED_TIMEOUT; the call is COMPLETED and charged exactly
    once, never more than was reserved for it.

    Old code: nothing bounded an answered call; it stayed ANSWERED (and its cap slots taken) for
    as long as the switch kept it up."""
    seconds = 2
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=seconds)
    path = stack.settings.audio_dir / f"{audio}.wav"
    with wave.open(str(path), "wb") as w:  # ten minutes of silence under the same name, on the switch's disk
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 600)
    stack.dialer(sim)
    placed = stack.place(tenant, audio, "0")
    stack.wait_status(placed.call_id, "ANSWERED")
    limit = seconds / TIME_SCALE + LIMIT_MARGIN_SECONDS  # real seconds from the answer
    call = stack.wait_status(placed.call_id, "COMPLETED", timeout=limit + 10)

    (row,) = sim_rows_of(sim.logged_calls(), placed.call_id)
    assert row["end"] is not None and row["cause"] == "ALLOTTED_TIMEOUT", row
    assert row["end"] - row["answer"] < 600  # cut long before the file's end
    (attempt,) = stack.attempts(placed.call_id)
    assert (attempt.hangup_cause, call.last_cause) == ("ALLOTTED_TIMEOUT", "ALLOTTED_TIMEOUT")
    assert attempt.billsec == row["billsec"] > seconds
    (charge,) = stack.charges(placed.call_id)
    assert Decimal(attempt.cost) == -Decimal(charge.amount) == Decimal(attempt.reserved_amount) > 0
    assert Decimal(call.cost) == Decimal(attempt.cost)
    wait_for("the switch to have no channel left", lambda: sim.stats()["current"] == 0)
    stack.assert_books_balance(tenant.account_id)
