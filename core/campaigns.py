"""Campaign lifecycle and statistics, in SQL (one transaction per change).

IMPORTING -> RUNNING (or SCHEDULED until ``start_at``) -> COMPLETED, with PAUSED
(by the user, or by the dialer when the balance cannot pay the next attempt) and
CANCELLED. Every transition is a conditional UPDATE, so racing requests and the
dialer cannot move a campaign twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Call, Campaign
from core.states import CallStatus, CampaignStatus

ACTIVE = (CampaignStatus.IMPORTING, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.PAUSED)
FINAL = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
LIVE = [s.value for s in CallStatus if s.is_live]
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


class TransitionRefused(Exception):
    def __init__(self, current: CampaignStatus, wanted: str) -> None:
        super().__init__(f"cannot {wanted} a campaign that is {current.value}")
        self.current = current
        self.wanted = wanted


def _move(session: Session, campaign_id: str, frm: tuple[CampaignStatus, ...], **values: Any) -> bool:
    done = session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_([s.value for s in frm]))
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return done == 1


def pause(session: Session, campaign_id: str, reason: str = "PAUSED_BY_USER") -> bool:
    """Stop dialing new attempts; live calls finish. Commits."""
    ok = _move(session, campaign_id, (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED),
               status=CampaignStatus.PAUSED, pause_reason=reason)
    session.commit()
    return ok


def resume(session: Session, campaign_id: str, now: datetime | None = None) -> bool:
    """PAUSED -> RUNNING (SCHEDULED while ``start_at`` is ahead). Commits."""
    now = now or utcnow()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return False
    target = CampaignStatus.SCHEDULED if campaign.start_at and campaign.start_at > now else CampaignStatus.RUNNING
    ok = _move(session, campaign_id, (CampaignStatus.PAUSED,), status=target, pause_reason=None,
               **({"started_at": campaign.started_at or now} if target is CampaignStatus.RUNNING else {}))
    session.commit()
    return ok


def cancel(session: Session, campaign_id: str, *, hang_up_live: bool = False) -> dict[str, int]:
    """Stop the campaign for good: pending calls become CANCELLED; live calls finish
    (or are hung up when asked) and are never retried. Commits."""
    now = utcnow()
    if not _move(session, campaign_id, ACTIVE, status=CampaignStatus.CANCELLED, completed_at=now,
                 pause_reason=None):
        session.rollback()
        return {"cancelled_pending": 0, "hang_up_requested": 0, "changed": 0}
    pending = session.execute(
        sa.update(Call)
        .where(Call.campaign_id == campaign_id, Call.status == CallStatus.QUEUED)
        .values(status=CallStatus.CANCELLED, ended_at=now, next_attempt_at=None, cancel_requested_at=now,
                last_cause="CAMPAIGN_CANCELLED", updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    hang_up = 0
    if hang_up_live:
        hang_up = session.execute(
            sa.update(Call)
            .where(Call.campaign_id == campaign_id, Call.status.in_(LIVE), Call.cancel_requested_at.is_(None))
            .values(cancel_requested_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
    session.commit()
    return {"cancelled_pending": pending, "hang_up_requested": hang_up, "changed": 1}


def start_due(session: Session, now: datetime | None = None) -> int:
    """SCHEDULED campaigns whose ``start_at`` has come start RUNNING. Commits."""
    now = now or utcnow()
    done = session.execute(
        sa.update(Campaign)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.start_at <= now)
        .values(status=CampaignStatus.RUNNING, started_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return int(done)


def complete_finished(session: Session, now: datetime | None = None) -> list[str]:
    """RUNNING campaigns with no call left to dial or in progress become COMPLETED. Commits."""
    now = now or utcnow()
    unfinished = (
        sa.select(Call.id)
        .where(Call.campaign_id == Campaign.id,
               Call.status.in_([CallStatus.QUEUED.value, *LIVE]))
        .limit(1)
        .correlate(Campaign)
    )
    candidates = list(session.execute(
        sa.select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING, ~sa.exists(unfinished))
    ).scalars())
    done = [cid for cid in candidates
            if _move(session, cid, (CampaignStatus.RUNNING,), status=CampaignStatus.COMPLETED, completed_at=now)]
    session.commit()
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
        return sum(self.by_status.get(s, 0) for s in LIVE)

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
