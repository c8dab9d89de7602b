"""Attempts given back after a lost ESL connection (found by the model-based test).

When the ESL connection drops, the reconnecting dialer gives back (``Store.unclaim``) the attempts
it claimed but has not originated yet: those still waiting for their pacing slot. The call goes
back to QUEUED with the same attempt id as its next one. Two things must still hold:

* the greenlet that was waiting to originate the given-back attempt must not originate it when it
  wakes, also when the attempt was claimed again meanwhile (under the same id): one attempt, one
  channel, never two channels to one number;
* a call the customer cancelled while its attempt waited must end CANCELLED with its reservation
  released, not wait in QUEUED for ever.

A low ``GATEWAY_CPS`` keeps attempts waiting for their slots, so the connection drop lands among
them every time.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.models import Account, Call, CallAttempt, WebhookEvent
from tests.model import invariants
from tests.model.services import Dialer, Services, Simulator, Tenant, wait, window

OPEN = {"QUEUED", "DIALING", "RINGING", "ANSWERED"}
QUICK = {"DIALER_OWNER_STALE_SECONDS": 3, "CDR_WAIT_SECONDS": 5, "CAP_LEASE_SECONDS": 6,
         "FS_ORIGINATE_TIMEOUT": 20}


@pytest.fixture()
def switch(services: Services) -> Iterator[Callable[[int], Simulator]]:
    """``switch(cps)``: a simulator and a dialer pacing ``cps`` originates per second."""
    started: list[tuple[Simulator, Dialer]] = []

    def start(cps: int) -> Simulator:
        node = f"unclaim-{secrets.token_hex(3)}"
        sim = Simulator(services.tmp, node)
        started.append((sim, services.start_dialer(sim, node, GATEWAY_CPS=cps, **QUICK)))
        return sim

    try:
        yield start
    finally:
        for sim, dialer in started:
            dialer.proc.stop()
            sim.stop()


def place(services: Services, tenant: Tenant, audio_id: str, digit: str) -> str:
    response = services.client.post("/api/v1/calls", headers=tenant.headers, json={
        "phone_number": f"0301{secrets.randbelow(10**6):06d}{digit}", "audio_id": audio_id, "max_retries": 0})
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def claimed_not_originated(services: Services, sim: Simulator, call_ids: list[str]) -> list[str]:
    """Calls whose attempt is claimed in SQL but not on the switch yet (waiting for its slot)."""
    with services.sql.connect() as conn:
        attempts = dict(conn.execute(sa.select(CallAttempt.call_id, CallAttempt.id)
                                     .where(CallAttempt.call_id.in_(call_ids))).all())
    seen = {c["uuid"] for c in sim.stats()["calls"]} | {
        c["uuid"] for c in json.loads(sim.api("show channels as json")).get("rows") or []}
    return [c for c in call_ids if c in attempts and attempts[c] not in seen]


def statuses(services: Services, call_ids: list[str]) -> dict[str, Any]:
    with services.sql.connect() as conn:
        return {r.id: getattr(r.status, "value", r.status) for r in
                conn.execute(sa.select(Call.id, Call.status).where(Call.id.in_(call_ids)))}


def settled(services: Services, call_ids: list[str], timeout: float) -> dict[str, Any]:
    """The calls' statuses once none is open any more, or at the deadline."""
    try:
        wait("the calls to end", lambda: not OPEN & set(statuses(services, call_ids).values()), timeout)
    except TimeoutError:
        pass
    return statuses(services, call_ids)


def reserved(services: Services, tenant: Tenant) -> Decimal:
    with services.sql.connect() as conn:
        return Decimal(conn.scalar(sa.select(Account.reserved).where(Account.id == tenant.account_id)))


def test_an_attempt_given_back_after_a_disconnect_is_originated_once(
        services: Services, switch: Callable[[int], Simulator]) -> None:
    # ten originates per second: twelve calls are claimed in one sweep, most of them wait for slots
    # up to a second ahead, and those given back are claimed again at once (under the same ids)
    sim = switch(10)
    tenant = services.tenant(max_concurrent_calls=12)
    audio = services.audio(tenant, seconds=40)  # 2 s of real time
    calls = [place(services, tenant, audio, "0") for _ in range(12)]
    waiting = wait("attempts claimed and waiting for their pacing slots",
                   lambda: (lambda w: w if len(w) >= 4 else None)(claimed_not_originated(services, sim, calls)),
                   20, 0.02)
    assert sim.api("sim_drop_all").startswith("+OK")
    assert not OPEN & set(settled(services, calls, 60).values())
    wait("the switch to have no channel left", lambda: sim.current() == 0, 30)
    originated = Counter(row["uuid"] for row in sim.rows())
    twice = {uuid: n for uuid, n in originated.items() if n > 1}
    # old behaviour: each attempt given back at the reconnect was claimed again under the same id,
    # and the greenlet that had been waiting for its old slot originated it as well
    assert not twice, f"attempts originated more than once: {twice} ({len(waiting)} waiting at the drop)"
    with services.sql.connect() as conn:  # the give-back withdrew its call.dialing: one per attempt
        e = WebhookEvent.__table__.c
        dialing = Counter(conn.execute(sa.select(e.subject_id, e.sequence).where(
            e.type == "call.dialing", e.subject_id.in_(calls))).all())
    assert {call_id for call_id, _ in dialing} == set(calls) and set(dialing.values()) == {1}, dialing
    snap = invariants.snapshot(services.sql, [tenant.account_id], sim.rows())
    assert not invariants.check_numbers(snap)


def test_a_call_cancelled_while_waiting_for_its_slot_ends_cancelled_after_a_disconnect(
        services: Services, switch: Callable[[int], Simulator]) -> None:
    sim = switch(1)  # one originate per second: the third call waits two seconds for its slot
    tenant = services.tenant(max_concurrent_calls=10)
    audio = services.audio(tenant, seconds=40)
    calls = [place(services, tenant, audio, "0") for _ in range(3)]
    waiting = wait("an attempt claimed and waiting for its pacing slot",
                   lambda: claimed_not_originated(services, sim, calls[1:]), 20, 0.05)
    victim = waiting[-1]
    response = services.client.post(f"/api/v1/calls/{victim}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    assert sim.api("sim_drop_all").startswith("+OK")
    # old behaviour: the reconnect gave the attempt back (QUEUED again) with the cancel already
    # marked; the dispatcher never claims a call whose cancel was asked for, so it stayed QUEUED
    # for ever, its reservation held
    final = settled(services, calls, 30)
    assert final[victim] == "CANCELLED", (final[victim], f"reserved {reserved(services, tenant)}")
    assert not OPEN & set(final.values()), final
    assert reserved(services, tenant) == 0


def test_a_campaign_cancelled_while_an_attempt_waits_for_its_slot_leaves_no_call_open(
        services: Services, switch: Callable[[int], Simulator]) -> None:
    sim = switch(1)
    tenant = services.tenant(max_concurrent_calls=10)
    audio = services.audio(tenant, seconds=40)
    phones = [f"0302{secrets.randbelow(10**6):06d}0" for _ in range(3)]
    response = services.post_campaign(tenant, audio, phones, window=window(-2, 4), concurrent_limit=3)
    assert response.status_code == 201, response.get_json()
    campaign = str(response.get_json()["id"])

    def imported() -> list[str]:
        with services.sql.connect() as conn:
            return list(conn.scalars(sa.select(Call.id).where(Call.campaign_id == campaign)))

    calls = wait("the import", lambda: (lambda ids: ids if len(ids) == 3 else None)(imported()), 30)
    wait("an attempt of the campaign claimed and waiting for its pacing slot",
         lambda: claimed_not_originated(services, sim, calls), 20, 0.05)
    response = services.client.post(f"/api/v1/campaigns/{campaign}/cancel", headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    assert sim.api("sim_drop_all").startswith("+OK")
    # old behaviour: the attempt given back at the reconnect left its call QUEUED in a CANCELLED
    # campaign; nothing dials or ends the calls of a cancelled campaign, so it stayed open for ever
    # with its reservation held
    final = settled(services, calls, 30)
    assert not OPEN & set(final.values()), (final, f"reserved {reserved(services, tenant)}")
    assert reserved(services, tenant) == 0
