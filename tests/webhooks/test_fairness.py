"""Fan-out is fair per account: one account's backlog never holds back another account's events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from core import outbox
from core.db import utcnow
from core.models import WebhookEvent, new_id
from tests.waiting import wait_for
from tests.webhooks.conftest import Rig
from tests.webhooks.test_delivery import endpoint
from webhooks.sweeper import BATCH, FAIR_SHARE, fan_out

BACKLOG = BATCH + 2 * FAIR_SHARE  # more than a whole first-in first-out batch


def write_backlog(rig: Rig, account_id: str, n: int) -> list[str]:
    """``n`` events of ``account_id``, each of its own subject (like the calls of a burst), written
    in one transaction a second ago, oldest first."""
    start = utcnow() - timedelta(seconds=1)
    rows = [outbox.event(account_id, "call.completed", "call", new_id(), 14, start + timedelta(microseconds=i),
                         {"status": "COMPLETED"}) for i in range(n)]
    with rig.app.extensions["zenscall"].engine.begin() as conn:
        outbox.write(conn, rows)
    return [r["id"] for r in rows]


def write_one(rig: Rig, account_id: str) -> str:
    now = utcnow()
    row = outbox.event(account_id, "call.completed", "call", new_id(), 14, now, {"status": "COMPLETED"})
    with rig.app.extensions["zenscall"].engine.begin() as conn:
        outbox.write(conn, [row])
    return str(row["id"])


def waiting(rig: Rig, account_id: str) -> int:
    e = WebhookEvent.__table__.c
    with rig.app.extensions["zenscall"].engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            e.account_id == account_id, e.fanned_out_at.is_(None))).scalar_one())


def test_one_round_fans_out_the_other_accounts_event_behind_a_backlog(rig: Rig, make_tenant: Any) -> None:
    a, b = make_tenant(), make_tenant()
    endpoint(rig, a, "http://127.0.0.1:9/a")
    endpoint(rig, b, "http://127.0.0.1:9/b")
    write_backlog(rig, a.account_id, BACKLOG)
    b_event = write_one(rig, b.account_id)

    with rig.app.extensions["zenscall"].engine.connect() as conn:
        handled = fan_out(conn, rig.settings)
    assert handled == FAIR_SHARE + 1  # A's fair share, and B's one event
    assert waiting(rig, b.account_id) == 0
    assert waiting(rig, a.account_id) == BACKLOG - FAIR_SHARE
    with rig.app.extensions["zenscall"].engine.connect() as conn:
        assert conn.execute(sa.select(WebhookEvent.fanned_out_at).where(WebhookEvent.id == b_event)).scalar()
        conn.commit()
        rounds = 1
        while fan_out(conn, rig.settings):
            rounds += 1
    assert waiting(rig, a.account_id) == 0
    assert rounds == -(-BACKLOG // FAIR_SHARE)  # the rest of A's backlog, a share per round


def test_the_other_accounts_event_is_delivered_before_a_backlog_is_through(rig: Rig, make_tenant: Any) -> None:
    slow = rig.receiver(lambda n, r: (200, 0.02))
    fast = rig.receiver()
    a, b = make_tenant(), make_tenant()
    endpoint(rig, a, slow.url)
    endpoint(rig, b, fast.url)
    backlog = write_backlog(rig, a.account_id, BACKLOG)
    b_event = write_one(rig, b.account_id)
    rig.worker()
    rig.worker()
    rig.sweeper()

    got = wait_for("B's delivery", lambda: fast.completed[:1], timeout=60)[0]
    assert got.json["id"] == b_event
    with slow.lock:
        before_b = sum(1 for r in slow.received if r.at <= got.at)
    assert before_b < BACKLOG // 2, f"{before_b} of A's {BACKLOG} events went before B's one"
    wait_for("A's backlog", lambda: len({r.json["id"] for r in slow.completed}) == len(backlog), timeout=240)
    assert {r.json["id"] for r in slow.completed} == set(backlog)
