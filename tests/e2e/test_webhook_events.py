"""The dialer writes each call's events to the webhook outbox with the state change itself."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.models import WebhookEvent
from tests.e2e.conftest import Stack


def events_of(stack: Stack, call_id: str) -> list[tuple[str, int, str]]:
    e = WebhookEvent.__table__.c
    with stack.sql.connect() as conn:
        rows = conn.execute(sa.select(e.type, e.sequence, e.data)
                            .where(e.subject_type == "call", e.subject_id == call_id).order_by(e.sequence)).all()
    return [(t, s, (d or {}).get("status")) for t, s, d in rows]


def test_every_step_of_a_call_is_an_event_in_sequence(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    answered = stack.place(tenant, audio, "1")
    busy = stack.place(tenant, audio, "2", max_retries=1)
    stack.set_call(busy.call_id, retry_delay_seconds=1)
    stack.dialer(sim)
    stack.wait_final([answered.call_id, busy.call_id], timeout=40)

    got = events_of(stack, answered.call_id)
    types = [t for t, _, _ in got]
    assert types[0] == "call.dialing" and types[-1] == "call.completed", got
    assert "call.answered" in types and [s for _, s, _ in got] == sorted(s for _, s, _ in got)
    assert all(status == {"call.dialing": "DIALING", "call.ringing": "RINGING", "call.answered": "ANSWERED",
                          "call.completed": "COMPLETED"}[t] for t, _, status in got)

    got = events_of(stack, busy.call_id)
    assert [(t, s) for t, s, _ in got if t != "call.ringing"] == [
        ("call.dialing", 11), ("call.retry_scheduled", 14), ("call.dialing", 21), ("call.busy", 24)], got


def test_a_cancelled_queued_call_is_an_event(stack: Stack, make_tenant: Any, upload: Any) -> None:
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    placed = stack.place(tenant, audio, "1")
    stack.cancel(tenant, placed.call_id)
    assert events_of(stack, placed.call_id) == [("call.cancelled", 5, "CANCELLED")]


def test_a_charge_below_the_threshold_and_to_zero_are_balance_events(stack: Stack, make_tenant: Any,
                                                                      upload: Any) -> None:
    tenant = stack.tenant(make_tenant, balance="1.25")  # exactly one 30 s pulse at PKR 2.50 a minute
    audio = upload(tenant, seconds=2)
    alert = stack.client.put("/api/v1/webhooks/balance-alert", headers=tenant.headers,
                             json={"low_balance_threshold": "1.00"})
    assert alert.status_code == 200 and alert.get_json() == {"low_balance_threshold": "1.00"}
    sim = stack.simulator()
    placed = stack.place(tenant, audio, "1")  # answers: one pulse charged
    stack.dialer(sim)
    stack.wait_final([placed.call_id], timeout=40)
    assert stack.call(placed.call_id).status == "COMPLETED"
    e = WebhookEvent.__table__.c
    with stack.sql.connect() as conn:
        rows = conn.execute(sa.select(e.type, e.data).where(e.subject_type == "account",
                                                            e.subject_id == tenant.account_id)
                            .order_by(e.type)).all()
    assert [t for t, _ in rows] == ["balance.depleted", "balance.low"]
    assert rows[1][1] == {"account_id": tenant.account_id, "balance": "0.00", "reserved": "0.00",
                          "available": "0.00", "currency": "PKR", "low_balance_threshold": "1.00"}
