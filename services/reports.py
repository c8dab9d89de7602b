"""What the console's overview shows: calls by outcome since a moment, and per hour."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.campaign_states import ACTIVE
from core.models import Call, Campaign


def calls_by_status(session: Session, account_id: str, since: datetime) -> dict[str, int]:
    """The account's calls created since ``since``, counted by status (one GROUP BY)."""
    rows = session.execute(
        sa.select(Call.status, sa.func.count()).where(Call.account_id == account_id, Call.created_at >= since)
        .group_by(Call.status)
    ).all()
    return {str(getattr(status, "value", status)): int(n) for status, n in rows}


Hourly = list[tuple[datetime, dict[str, int]]]


def calls_per_hour(session: Session, account_id: str, end: datetime, hours: int = 24) -> Hourly:
    """The account's calls of the ``hours`` hours before ``end``, per hour and status, oldest hour
    first (one GROUP BY over an hour index computed in SQL, the same on MariaDB and SQLite)."""
    start = end - timedelta(hours=hours)
    bucket = sa.case(*[(Call.created_at < start + timedelta(hours=i + 1), i) for i in range(hours)], else_=hours - 1)
    rows = session.execute(
        sa.select(bucket.label("hour"), Call.status, sa.func.count())
        .where(Call.account_id == account_id, Call.created_at >= start, Call.created_at < end)
        .group_by(sa.literal_column("hour"), Call.status)
    ).all()
    result: Hourly = [(start + timedelta(hours=i), {}) for i in range(hours)]
    for index, status, n in rows:
        result[int(index)][1][str(getattr(status, "value", status))] = int(n)
    return result


def active_campaigns(session: Session, account_id: str, limit: int = 10) -> list[Campaign]:
    """The account's unfinished campaigns, newest first."""
    query: Any = (sa.select(Campaign).where(Campaign.account_id == account_id, Campaign.status.in_(ACTIVE))
                  .order_by(Campaign.created_at.desc(), Campaign.id).limit(limit))
    return list(session.execute(query).scalars())
