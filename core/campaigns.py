"""Campaign changes and statistics in SQL, each step as the campaign state machine allows it.

Every status change is a conditional UPDATE whose allowed sources come from
``core.campaign_states`` (``CampaignStep.sources``), so racing requests and the dialer cannot move
a campaign twice. Pending calls of a cancelled campaign end through the call state machine
(``Step.CAMPAIGN_CANCEL``). The functions take a Session or a Connection; each commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import call_states as cs
from core import outbox
from core.call_states import CallStatus, Step
from core.campaign_states import ACTIVE, FINAL, PAUSED_BY_USER, CampaignStatus, CampaignStep
from core.db import utcnow
from core.models import Call, Campaign

__all__ = ["ACTIVE", "FINAL", "Stats", "cancel", "complete_finished", "pause", "resume", "start_due", "stats"]

Db = Session | sa.Connection
_campaigns, _calls = Campaign.__table__, Call.__table__


def _move(db: Db, campaign_id: str, step: CampaignStep, **values: Any) -> bool:
    target = values.get("status")
    if target is not None and target not in step.rule.targets:
        raise ValueError(f"{step.value} cannot end in {target}")
    done = db.execute(
        sa.update(_campaigns)
        .where(_campaigns.c.id == campaign_id, _campaigns.c.status.in_(step.sources))
        .values(updated_at=utcnow(), **values)
    ).rowcount
    return done == 1


def pause(db: Db, campaign_id: str, reason: str = PAUSED_BY_USER) -> bool:
    """Stop dialing new attempts; live calls finish. Commits."""
    ok = _move(db, campaign_id, CampaignStep.PAUSE, status=CampaignStatus.PAUSED, pause_reason=reason)
    if ok:
        outbox.campaign_events(db, [campaign_id], "campaign.paused", utcnow(), {"pause_reason": reason})
    db.commit()
    return ok


def resume(db: Db, campaign_id: str, now: datetime | None = None) -> bool:
    """PAUSED -> RUNNING (SCHEDULED while ``start_at`` is ahead). Commits."""
    now = now or utcnow()
    row = db.execute(sa.select(_campaigns.c.start_at, _campaigns.c.started_at)
                     .where(_campaigns.c.id == campaign_id)).one_or_none()
    if row is None:
        return False
    start_at, started_at = row
    target = CampaignStatus.SCHEDULED if start_at and start_at > now else CampaignStatus.RUNNING
    ok = _move(db, campaign_id, CampaignStep.RESUME, status=target, pause_reason=None,
               **({"started_at": started_at or now} if target is CampaignStatus.RUNNING else {}))
    if ok:
        outbox.campaign_events(db, [campaign_id], "campaign.resumed", now, {"status": target.value})
    db.commit()
    return ok


def cancel(db: Db, campaign_id: str, *, hang_up_live: bool = False) -> dict[str, int]:
    """Stop the campaign for good: pending calls become CANCELLED; live calls finish (or are hung
    up when asked) and are never retried. Commits."""
    now = utcnow()
    if not _move(db, campaign_id, CampaignStep.CANCEL, status=CampaignStatus.CANCELLED, completed_at=now,
                 pause_reason=None):
        db.rollback()
        return {"cancelled_pending": 0, "hang_up_requested": 0, "changed": 0}
    outbox.campaign_events(db, [campaign_id], "campaign.cancelled", now)
    c = _calls.c
    pending = db.execute(
        sa.update(_calls)
        .where(c.campaign_id == campaign_id, c.status.in_(Step.CAMPAIGN_CANCEL.sources))
        .values(status=cs.check(Step.CAMPAIGN_CANCEL, CallStatus.QUEUED, CallStatus.CANCELLED), ended_at=now,
                next_attempt_at=None, cancel_requested_at=now, last_cause=cs.CAMPAIGN_CANCELLED, updated_at=now)
    ).rowcount
    if pending:
        outbox.cancelled_calls_events(db, sa.and_(c.campaign_id == campaign_id, c.status == CallStatus.CANCELLED,
                                                  c.last_cause == cs.CAMPAIGN_CANCELLED, c.ended_at == now), now)
    hang_up = 0
    if hang_up_live:
        hang_up = db.execute(
            sa.update(_calls)
            .where(c.campaign_id == campaign_id, c.status.in_(Step.REQUEST_CANCEL.sources),
                   c.cancel_requested_at.is_(None))
            .values(cancel_requested_at=now, updated_at=now)
        ).rowcount
    db.commit()
    return {"cancelled_pending": pending, "hang_up_requested": hang_up, "changed": 1}


def start_due(db: Db, now: datetime | None = None) -> int:
    """SCHEDULED campaigns whose ``start_at`` has come start RUNNING. Commits."""
    now = now or utcnow()
    due = list(db.execute(sa.select(_campaigns.c.id).where(
        _campaigns.c.status.in_(CampaignStep.START.sources), _campaigns.c.start_at <= now)).scalars())
    if not due:
        db.rollback()
        return 0
    started = [cid for cid in due if _move(db, cid, CampaignStep.START, status=CampaignStatus.RUNNING,
                                           started_at=now)]
    outbox.campaign_events(db, started, "campaign.started", now)
    db.commit()
    return len(started)


def complete_finished(db: Db, now: datetime | None = None) -> list[str]:
    """RUNNING campaigns with no call left to dial or in progress become COMPLETED. Commits."""
    now = now or utcnow()
    c = _calls.c
    unfinished = (
        sa.select(c.id)
        .where(c.campaign_id == _campaigns.c.id, c.status.in_(sorted(s.value for s in cs.OPEN)))
        .limit(1)
        .correlate(_campaigns)
    )
    candidates = list(db.execute(
        sa.select(_campaigns.c.id).where(_campaigns.c.status.in_(CampaignStep.COMPLETE.sources),
                                         ~sa.exists(unfinished))
    ).scalars())
    done = [cid for cid in candidates
            if _move(db, cid, CampaignStep.COMPLETE, status=CampaignStatus.COMPLETED, completed_at=now)]
    outbox.campaign_events(db, done, "campaign.completed", now)
    db.commit()
    return done


@dataclass(frozen=True)
class Stats:
    total: int
    by_status: dict[str, int]
    attempts: int
    billsec_answered: int
    cost: Decimal
    started_at: datetime | None
    completed_at: datetime | None
    now: datetime

    @property
    def pending(self) -> int:
        return self.by_status.get(CallStatus.QUEUED.value, 0)

    @property
    def in_progress(self) -> int:
        return sum(self.by_status.get(s.value, 0) for s in cs.LIVE)

    @property
    def finished(self) -> int:
        return self.total - self.pending - self.in_progress

    @property
    def answered(self) -> int:
        return self.by_status.get(CallStatus.COMPLETED.value, 0)

    def as_dict(self) -> dict[str, Any]:
        dialed_outcomes = sum(self.by_status.get(s.value, 0) for s in
                              (CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED))
        elapsed = (self.now - self.started_at).total_seconds() if self.started_at else 0.0
        remaining = self.pending + self.in_progress
        eta: float | None = None
        if self.completed_at is None and remaining and elapsed > 0 and self.finished:
            eta = round(remaining / (self.finished / elapsed), 1)
        elif remaining == 0:
            eta = 0.0
        return {
            "total": self.total,
            "pending": self.pending,
            "in_progress": self.in_progress,
            "completed": self.answered,
            "busy": self.by_status.get(CallStatus.BUSY.value, 0),
            "no_answer": self.by_status.get(CallStatus.NO_ANSWER.value, 0),
            "failed": self.by_status.get(CallStatus.FAILED.value, 0),
            "cancelled": self.by_status.get(CallStatus.CANCELLED.value, 0),
            "attempts": self.attempts,
            "answer_rate": round(self.answered / dialed_outcomes, 4) if dialed_outcomes else None,
            "average_billsec": round(self.billsec_answered / self.answered, 1) if self.answered else None,
            "cost": self.cost,
            "progress_percent": round(100.0 * self.finished / self.total, 2) if self.total else 0.0,
            "estimated_seconds_left": eta,
        }


def stats(session: Session, campaign: Campaign, now: datetime | None = None) -> Stats:
    """Counts by status and sums over the campaign's calls (one indexed GROUP BY)."""
    rows = session.execute(
        sa.select(Call.status, sa.func.count(), sa.func.coalesce(sa.func.sum(Call.attempts_count), 0),
                  sa.func.coalesce(sa.func.sum(Call.billsec), 0), sa.func.coalesce(sa.func.sum(Call.cost), 0))
        .where(Call.campaign_id == campaign.id)
        .group_by(Call.status)
    ).all()
    by_status = {str(getattr(s, "value", s)): int(n) for s, n, *_ in rows}
    return Stats(
        total=sum(by_status.values()),
        by_status=by_status,
        attempts=sum(int(a) for _, _, a, _, _ in rows),
        billsec_answered=sum(int(b) for s, _, _, b, _ in rows if str(getattr(s, "value", s)) == "COMPLETED"),
        cost=sum((Decimal(c) for *_, c in rows), Decimal("0")),
        started_at=campaign.started_at,
        completed_at=campaign.completed_at,
        now=now or utcnow(),
    )
