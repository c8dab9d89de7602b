"""The webhook outbox: events written in the same transaction as the state change that causes them.

A crash, a Redis flush or a dead worker loses no event: the row commits with the change or not at
all, and the webhook sweeper (``webhooks.sweeper``) sends what is due from SQL. Writers call
``write`` with the rows built here inside their own transaction (the dialer: one multi-row
INSERT per batch). Every event is written, whether or not the account has a receiver; the
sweeper drops events nobody subscribed to when it fans them out (no race with an endpoint created
meanwhile: the subscription is looked up after the event committed).

``sequence`` orders the events of one subject (a call, a campaign). For a call it is derived from
the attempt and the step, with no read: attempt n's dialing is ``10n+1``, ringing ``10n+2``,
answered ``10n+3``, its end (final, or a retry scheduled) ``10n+4``; a call ended while queued
(cancelled, do-not-call, unpaid) after n attempts ``10n+5``; the settlement of an attempt n whose
outcome was unknown (an operator, or the switch's late record: the call's final word) ``10n+6``.
Numbers grow along the call's life;
gaps are normal. Campaign and account events use the time of the step in microseconds
(``time_sequence``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from core import sqlbatch
from core.call_states import CallStatus
from core.models import Call, Campaign, WebhookEvent

CALL_EVENTS = ("call.dialing", "call.ringing", "call.answered", "call.completed", "call.busy", "call.no_answer",
               "call.failed", "call.cancelled", "call.retry_scheduled")
CAMPAIGN_EVENTS = ("campaign.import_completed", "campaign.import_failed", "campaign.started", "campaign.paused",
                   "campaign.resumed", "campaign.completed", "campaign.cancelled")
ACCOUNT_EVENTS = ("balance.low", "balance.depleted", "webhook.disabled")
EVENT_TYPES = CALL_EVENTS + CAMPAIGN_EVENTS + ACCOUNT_EVENTS
PING = "ping"  # sent by POST /webhooks/{id}/test to that endpoint only

#: the event a call's new status causes (QUEUED after an attempt: a retry was scheduled)
CALL_EVENT_FOR = {
    CallStatus.DIALING: "call.dialing", CallStatus.RINGING: "call.ringing", CallStatus.ANSWERED: "call.answered",
    CallStatus.COMPLETED: "call.completed", CallStatus.BUSY: "call.busy", CallStatus.NO_ANSWER: "call.no_answer",
    CallStatus.FAILED: "call.failed", CallStatus.CANCELLED: "call.cancelled",
    CallStatus.QUEUED: "call.retry_scheduled",
}
_STAGE = {CallStatus.DIALING: 1, CallStatus.RINGING: 2, CallStatus.ANSWERED: 3}
ENDED_QUEUED = 5  # the stage of a call ended while waiting for an attempt
SETTLED = 6  # the stage of an attempt whose unknown outcome was settled afterwards

_events = WebhookEvent.__table__


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def call_sequence(attempt_no: int, status: CallStatus, *, queued_end: bool = False, settled: bool = False) -> int:
    """The sequence of a call's event (see the module doc)."""
    stage = SETTLED if settled else ENDED_QUEUED if queued_end else _STAGE.get(status, 4)
    return attempt_no * 10 + stage


def call_event(account_id: str, call_id: str, status: CallStatus, attempt_no: int, now: datetime, *,
               queued_end: bool = False, settled: bool = False) -> dict[str, Any]:
    """The outbox row of a call moving to ``status`` (``attempt_no``: the attempt it concerns, or the
    attempts made so far for a call ended while queued; ``settled``: attempt ``attempt_no``'s
    unknown outcome settled afterwards)."""
    return event(account_id, CALL_EVENT_FOR[status], "call", call_id,
                 call_sequence(attempt_no, status, queued_end=queued_end, settled=settled), now,
                 {"status": status.value})


def withdraw_dialing(conn: sa.Connection | Any, attempts: list[tuple[str, int]]) -> None:
    """Delete the ``call.dialing`` of attempts given back before their originate was sent
    (``(call_id, attempt_no)``), in the caller's transaction, unless it was fanned out already: the
    re-claim of the same attempt writes its own. A receiver may still see a second
    ``call.dialing`` with the same ``sequence`` when the first had gone out before the give-back:
    the same attempt dialing again, not a new one."""
    if not attempts:
        return
    e = _events.c
    conn.execute(sa.delete(_events).where(
        e.fanned_out_at.is_(None), e.type == "call.dialing", e.subject_type == "call",
        sa.or_(*[sa.and_(e.subject_id == call_id, e.sequence == call_sequence(n, CallStatus.DIALING))
                 for call_id, n in attempts])))


def event(account_id: str, type_: str, subject_type: str, subject_id: str, sequence: int, now: datetime,
          data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One outbox row (``payload`` and ``fanned_out_at`` start NULL: left out of the INSERT)."""
    return {"id": new_event_id(), "account_id": account_id, "type": type_, "subject_type": subject_type,
            "subject_id": subject_id, "sequence": sequence, "data": data, "created_at": now}


def write(conn: sa.Connection | Any, rows: list[dict[str, Any]]) -> None:
    """Insert the events in the caller's transaction: one statement (a multi-row INSERT)."""
    if not rows:
        return
    if isinstance(conn, sa.Connection):  # the dialer's and the ledger's batches: precompiled
        sqlbatch.insert_rows(conn, _events, rows)
    else:
        conn.execute(sa.insert(_events), rows)


def balance_event(account_id: str, type_: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """balance.low / balance.depleted: ``data`` is the account's money as ``GET /balance`` shows it."""
    return event(account_id, type_, "account", account_id, time_sequence(now), now, data)


def time_sequence(now: datetime) -> int:
    """The sequence of a subject whose steps are rare and serialised by its row lock (a campaign,
    an account's balance): microseconds since the epoch."""
    return int(now.timestamp() * 1_000_000)


def campaign_events(conn: sa.Connection | Any, campaign_ids: list[str], type_: str, now: datetime,
                    data: dict[str, Any] | None = None) -> None:
    """Write one event per campaign (their accounts read here: campaign steps are rare)."""
    if not campaign_ids:
        return
    camp = Campaign.__table__.c
    owners = conn.execute(sa.select(camp.id, camp.account_id).where(camp.id.in_(campaign_ids))).all()
    write(conn, [event(account_id, type_, "campaign", cid, time_sequence(now), now,
                       {"status": CAMPAIGN_STATUS[type_], **(data or {})} if type_ in CAMPAIGN_STATUS else data)
                 for cid, account_id in owners])


CAMPAIGN_STATUS = {"campaign.started": "RUNNING", "campaign.paused": "PAUSED", "campaign.completed": "COMPLETED",
                   "campaign.cancelled": "CANCELLED", "campaign.import_failed": "FAILED"}


def cancelled_calls_events(conn: sa.Connection | Any, where: Any, now: datetime) -> None:
    """``call.cancelled`` for every call matching ``where`` (the calls a campaign cancel just ended),
    in one INSERT ... SELECT however many there are."""
    c = Call.__table__.c
    dialect = conn.get_bind().dialect if hasattr(conn, "get_bind") else conn.dialect
    if dialect.name == "sqlite":
        new_id = sa.literal("evt_") + sa.func.lower(sa.func.hex(sa.func.randomblob(16)))
    else:
        new_id = sa.func.concat("evt_", sa.func.replace(sa.func.uuid(), "-", ""))
    rows = sa.select(new_id, c.account_id, sa.literal("call.cancelled"), sa.literal("call"), c.id,
                     c.attempts_count * 10 + ENDED_QUEUED, sa.literal(now, WebhookEvent.created_at.type),
                     ).where(where)
    conn.execute(sa.insert(_events).from_select(
        ["id", "account_id", "type", "subject_type", "subject_id", "sequence", "created_at"], rows))
