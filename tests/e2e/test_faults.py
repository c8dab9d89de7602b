"""Faults: the ESL connection breaks, the switch restarts, the dialer is killed -9, Redis
is flushed. Every call still ends in exactly one final state and the books balance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.e2e.conftest import ROOT, Stack, assert_sim_no_overlap, wait_for
from tests.e2e.test_webhook_events import events_of


def test_reconnect_after_connection_loss_keeps_live_calls(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    dialer = stack.dialer(sim)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=60)  # 3 s of real time
    placed = [stack.place(tenant, audio, "0") for _ in range(3)]
    for p in placed:
        stack.wait_status(p.call_id, "ANSWERED")
    assert sim.api("sim_drop_all").startswith("+OK")
    wait_for("the dialer to reconnect", lambda: (stack.heartbeat(dialer) or {}).get("reconnects_total", 0) >= 1
             and stack.heartbeat(dialer)["esl_connected"])  # type: ignore[index]
    stack.wait_final([p.call_id for p in placed])
    for p in placed:
        call = stack.call(p.call_id)
        (attempt,) = stack.attempts(p.call_id)
        # the hangup event came over the new connection: the message played to its end
        assert (call.status, call.last_cause) == ("COMPLETED", "NORMAL_CLEARING")
        assert attempt.billsec >= 59, attempt.billsec
        stack.assert_money(p.call_id)
    # and the reconnected dialer keeps dialing
    after = stack.place(tenant, audio, "2")
    assert stack.wait_status(after.call_id, "BUSY").attempts_count == 1
    stack.assert_books_balance(tenant.account_id)


def test_switch_crash_ends_unseen_calls_once_as_unknown(stack: Stack, make_tenant: Any, upload: Any) -> None:
    """The switch dies with calls up: no hangup event, no record of the switch will ever come. The
    calls end FAILED / OUTCOME_UNKNOWN (never dialed again: the callee may have heard the message)
    with their reservations held for an operator to settle."""
    sim = stack.simulator()
    dialer = stack.dialer(sim, FS_ORIGINATE_TIMEOUT=600, CDR_WAIT_SECONDS=2)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=240)
    answered = [stack.place(tenant, audio, "0") for _ in range(2)]
    ringing = stack.place(tenant, audio, "3")
    for p in answered:
        stack.wait_status(p.call_id, "ANSWERED")
    stack.wait_status(ringing.call_id, "RINGING")
    sim.restart()  # every channel is gone, no hangup event will ever come
    wait_for("the dialer to reconnect", lambda: (stack.heartbeat(dialer) or {}).get("reconnects_total", 0) >= 1)
    ids = [p.call_id for p in [*answered, ringing]]
    stack.wait_final(ids)
    held = Decimal(0)
    for call_id in ids:
        call = stack.call(call_id)
        assert (call.status, call.last_cause, call.attempts_count) == ("FAILED", "OUTCOME_UNKNOWN", 1)
        (attempt,) = stack.attempts(call_id)
        assert attempt.ended_at is not None and attempt.hangup_cause == "OUTCOME_UNKNOWN"
        assert Decimal(attempt.cost) == 0 and Decimal(call.cost) == 0
        held += Decimal(attempt.reserved_amount)
    account = stack.account(tenant.account_id)
    assert Decimal(account.reserved) == held > 0  # kept until an operator (or a late record) settles them
    stack.assert_books_balance(tenant.account_id)

    # the operator settles them from the switch's and the carrier's records
    listed = [json.loads(line) for line in flask(stack, "calls", "unsettled", "--account", tenant.account_id)]
    assert sorted(row["call_id"] for row in listed) == sorted(ids)
    first = stack.attempts(answered[0].call_id)[0]
    settled = json.loads(flask(stack, "calls", "settle", first.id, "--answered", "--billsec", "42")[0])
    assert settled["status"] == "COMPLETED"
    ringing_attempt = stack.attempts(ringing.call_id)[0]
    assert json.loads(flask(stack, "calls", "settle", ringing_attempt.id, "--not-answered",
                            "--cause", "NO_ANSWER")[0])["status"] == "FAILED"
    call = stack.call(answered[0].call_id)
    assert (call.status, call.billsec) == ("COMPLETED", 42)
    stack.assert_money(answered[0].call_id)
    assert stack.call(ringing.call_id).last_cause == "NO_ANSWER"
    # each settlement changed what the call shows: an event with it, after the unknown end's
    assert events_of(stack, answered[0].call_id)[-2:] == [("call.failed", 14, "FAILED"),
                                                           ("call.completed", 16, "COMPLETED")]
    assert events_of(stack, ringing.call_id)[-2:] == [("call.failed", 14, "FAILED"), ("call.failed", 16, "FAILED")]
    assert events_of(stack, answered[1].call_id)[-1] == ("call.failed", 14, "FAILED")  # not settled yet
    again = subprocess.run([FLASK, "--app", "wsgi", "calls", "settle", first.id, "--not-answered"], cwd=ROOT,
                           env=cli_env(stack), capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "NOT_FOUND" in again.stderr  # settled once
    account = stack.account(tenant.account_id)
    assert Decimal(account.reserved) == Decimal(stack.attempts(answered[1].call_id)[0].reserved_amount)
    stack.assert_books_balance(tenant.account_id)


FLASK = str(Path(sys.executable).parent / "flask")


def cli_env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": stack.settings.database_url, "REDIS_URL": stack.settings.redis_url or "",
            "VAR_DIR": str(stack.settings.var_dir)}


def flask(stack: Stack, *args: str) -> list[str]:
    result = subprocess.run([FLASK, "--app", "wsgi", *args], cwd=ROOT, env=cli_env(stack), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_kill9_mid_batch_then_restart(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=40)  # 2 s of real time
    digits = "1234567890" * 3
    placed = [stack.place(tenant, audio, d, max_retries=1) for d in digits]
    ids = [p.call_id for p in placed]
    for call_id in ids:
        stack.set_call(call_id, retry_delay_seconds=1)
    quick = {"DIALER_OWNER_STALE_SECONDS": 3, "CDR_WAIT_SECONDS": 5}
    first = stack.dialer(sim, NODE_MAX_CHANNELS=12, FS_ORIGINATE_TIMEOUT=20, **quick)

    def mid_batch() -> bool:
        statuses = Counter(stack.status(i) for i in ids)
        live = statuses["DIALING"] + statuses["RINGING"] + statuses["ANSWERED"]
        return live >= 4 and statuses["QUEUED"] >= 4

    wait_for("the batch to be in full swing", mid_batch)
    first.kill9()
    stack.dialer(sim, NODE_MAX_CHANNELS=12, FS_ORIGINATE_TIMEOUT=20, **quick)
    stack.wait_final(ids, timeout=60)
    wait_for("the switch to have no channel left", lambda: sim.stats()["current"] == 0)

    stack.assert_no_overlap(ids)
    channels = sim.logged_calls()
    assert_sim_no_overlap(channels)
    originated = Counter(row["uuid"] for row in channels)
    assert all(n == 1 for n in originated.values()), "an attempt was originated twice"
    for p in placed:
        call = stack.call(p.call_id)
        assert call.ended_at is not None and call.live_attempt_id is None
        attempts = stack.attempts(p.call_id)
        assert call.attempts_count == len(attempts) <= 2
        if any(a.answered_at is not None for a in attempts[:-1]):
            raise AssertionError(f"call {p.call_id} was dialed again after an answer")
        on_switch = [r for r in channels if r["number"].endswith(p.phone[-10:])]
        assert len(on_switch) <= len(attempts)
        stack.assert_money(p.call_id)
    stack.assert_books_balance(tenant.account_id)


def test_redis_flush_loses_no_call(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=20)
    # calls whose jobs vanish before any dialer runs: only SQL knows them
    early = [stack.place(tenant, audio, d) for d in "6261"]
    stack.redis.flushdb()
    dialer = stack.dialer(sim)
    # and a flush while calls are up: leases come back, the calls finish, new ones are dialed
    late = [stack.place(tenant, audio, "6") for _ in range(3)]
    for p in late:
        stack.wait_status(p.call_id, "ANSWERED", "COMPLETED")
    stack.redis.flushdb()
    later = [stack.place(tenant, audio, d) for d in "26"]
    stack.redis.flushdb()
    ids = [p.call_id for p in [*early, *late, *later]]
    stack.wait_final(ids, timeout=40)
    for p in [*early, *late, *later]:
        expected = "BUSY" if p.digit == "2" else "COMPLETED"
        call = stack.call(p.call_id)
        assert (call.status, call.attempts_count) == (expected, 1), p
        stack.assert_money(p.call_id)
    assert dialer.alive()
    stack.assert_books_balance(tenant.account_id)
