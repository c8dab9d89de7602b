"""Calls answered and ended while their dialer was dead or disconnected: each is settled from
what the switch saw (a hangup event another dialer heard, or the switch's own record of the
leg), charged exactly once and never dialed again; with no record at all it ends
OUTCOME_UNKNOWN (never retried, its reservation held) until a late record settles it.

The switch's records are the simulator's own (``python -m simulator --cdr-dir``: mod_json_cdr's
``<uuid>.cdr.json``, as tests/simulator/test_cdr.py checks against the real switch's).
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from typing import Any

from tests.e2e.conftest import Stack, live_channels, sim_rows_of, wait_for
from tests.e2e.test_webhook_events import events_of


def _ended_on_switch(stack: Stack, sim: Any, call_id: str) -> dict[str, Any]:
    def row() -> dict[str, Any] | None:
        rows = sim_rows_of(sim.logged_calls(), call_id)
        return rows[0] if rows else None

    return wait_for(f"the switch to end call {call_id}", row)  # type: ignore[no-any-return]


def _assert_settled_once(stack: Stack, call_id: str, row: dict[str, Any]) -> None:
    """COMPLETED from the switch's facts, one attempt, one charge, one channel on the switch."""
    call = stack.call(call_id)
    (attempt,) = stack.attempts(call_id)
    assert (call.status, call.attempts_count, call.next_attempt_at) == ("COMPLETED", 1, None)
    assert attempt.id == row["uuid"] and attempt.answered_at is not None
    assert (attempt.hangup_cause, attempt.billsec) == (row["cause"], row["billsec"])
    assert row["billsec"] > 0
    assert len(stack.charges(call_id)) == 1
    stack.assert_money(call_id)


def test_call_ended_while_its_dialer_was_dead_is_settled_from_the_hangup_another_dialer_heard(
        stack: Stack, make_tenant: Any, upload: Any) -> None:
    """The dialer is killed -9 during an answered call; a new dialer connects while the call is
    still up and hears its hangup (not its own attempt yet: kept); once the dead process's
    heartbeat is stale it adopts the attempt and settles it from that event. No switch record
    exists (and the wait for one is long), so the event is the only way to settle it.

    Old code: the hangup of an attempt the new process did not know was dropped; the attempt was
    later reconciled as lost (FAILED and retried: the callee heard the message twice and the
    call was charged twice, or not at all)."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=80)  # 4 s of real time
    env = {"DIALER_OWNER_STALE_SECONDS": 8, "CDR_WAIT_SECONDS": 120}
    first = stack.dialer(sim, **env)
    placed = stack.place(tenant, audio, "6", max_retries=2)
    stack.wait_status(placed.call_id, "ANSWERED")
    first.kill9()
    stack.dialer(sim, **env)
    (attempt,) = stack.attempts(placed.call_id)
    assert attempt.id in live_channels(sim), "the call ended before the new dialer listened"
    row = _ended_on_switch(stack, sim, placed.call_id)
    # it ended before the dead process's heartbeat went stale: nobody owned what heard it
    (attempt,) = stack.attempts(placed.call_id)
    assert f":{first.pid}:" in attempt.owner and attempt.ended_at is None, "adopted before the hangup"
    stack.wait_status(placed.call_id, "COMPLETED", timeout=20)
    _assert_settled_once(stack, placed.call_id, row)
    assert len(sim_rows_of(sim.logged_calls(), placed.call_id)) == 1
    stack.assert_books_balance(tenant.account_id)


def test_call_ended_while_no_dialer_ran_ends_unknown_then_settles_from_the_late_switch_record(
        stack: Stack, make_tenant: Any, upload: Any) -> None:
    """The dialer is killed -9 during an answered call and the call ends before any dialer runs:
    nobody heard the hangup. The next dialer adopts the attempt, finds no channel and no record,
    and after CDR_WAIT_SECONDS ends it FAILED / OUTCOME_UNKNOWN: never retried (the callee may
    have heard the message), its reservation held. The switch's record then turns up: the
    attempt is settled from it (COMPLETED, charged once, the hold released).

    Old code: the attempt was reconciled as a failure with a retry left, so the callee was
    called again after hearing the message; its money was released as if nothing had played."""
    # the switch's records go where the dialer does not look yet: as when the switch could not
    # write them in place and an operator later moves them there (its err-log-dir)
    late = stack.log_dir / "cdr-late"
    sim = stack.simulator(cdr_dir=late)
    cdr = stack.log_dir / "cdr"
    cdr.mkdir(exist_ok=True)
    env = {"DIALER_OWNER_STALE_SECONDS": 2, "CDR_WAIT_SECONDS": 2, "CDR_DIR": cdr}
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=20)  # 1 s of real time
    first = stack.dialer(sim, **env)
    placed = stack.place(tenant, audio, "6", max_retries=2)
    stack.set_call(placed.call_id, retry_delay_seconds=0)
    stack.wait_status(placed.call_id, "ANSWERED")
    first.kill9()
    row = _ended_on_switch(stack, sim, placed.call_id)
    second = stack.dialer(sim, **env)

    call = stack.wait_status(placed.call_id, "FAILED", timeout=20)
    (attempt,) = stack.attempts(placed.call_id)
    assert (call.last_cause, call.attempts_count, call.next_attempt_at) == ("OUTCOME_UNKNOWN", 1, None)
    assert attempt.hangup_cause == "OUTCOME_UNKNOWN" and Decimal(attempt.cost) == 0
    assert Decimal(stack.account(tenant.account_id).reserved) == Decimal(attempt.reserved_amount) > 0
    assert stack.charges(placed.call_id) == []
    stack.assert_books_balance(tenant.account_id)  # the held reservation is an unsettled hold

    (attempt,) = stack.attempts(placed.call_id)
    record = cdr / f"{attempt.id}.cdr.json"
    shutil.move(late / record.name, record)  # the switch's own record of the leg, late
    stack.wait_status(placed.call_id, "COMPLETED", timeout=20)
    _assert_settled_once(stack, placed.call_id, row)
    assert Decimal(stack.account(tenant.account_id).reserved) == 0
    wait_for("the dialer to delete the record it used", lambda: not record.exists())
    assert events_of(stack, placed.call_id)[-2:] == [("call.failed", 14, "FAILED"),
                                                      ("call.completed", 16, "COMPLETED")]
    assert len(sim_rows_of(sim.logged_calls(), placed.call_id)) == 1  # never dialed again
    assert second.alive()
    stack.assert_books_balance(tenant.account_id)


def test_call_ended_while_the_dialer_was_disconnected_is_settled_from_the_switch_record(
        stack: Stack, make_tenant: Any, upload: Any) -> None:
    """The dialer's connection to the switch is cut during an answered call; the call ends while
    it cannot hear; when it reconnects the channel is gone, and the switch's record of the leg
    settles it (COMPLETED with the switch's billsec, charged once), long before the wait for a
    record would give up.

    Old code: a call that ended while the event socket was down was reconciled as lost (FAILED,
    retried): the callee was dialed again and nothing was charged for the message heard."""
    sim = stack.simulator()  # it writes its records where the dialer reads them
    proxy = stack.proxy_to_switch(sim)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=40)  # 2 s of real time
    dialer = stack.dialer(sim, FS_PORT=proxy.port, CDR_WAIT_SECONDS=120)
    placed = stack.place(tenant, audio, "6", max_retries=2)
    stack.set_call(placed.call_id, retry_delay_seconds=0)
    stack.wait_status(placed.call_id, "ANSWERED")
    proxy.cut()
    row = _ended_on_switch(stack, sim, placed.call_id)
    assert stack.status(placed.call_id) == "ANSWERED"  # the dialer did not hear the hangup
    proxy.restore()
    stack.wait_status(placed.call_id, "COMPLETED", timeout=20)
    _assert_settled_once(stack, placed.call_id, row)
    assert len(sim_rows_of(sim.logged_calls(), placed.call_id)) == 1
    assert (stack.heartbeat(dialer) or {}).get("reconnects_total", 0) >= 1
    stack.assert_books_balance(tenant.account_id)
