"""The overview: money, today's calls by outcome, active campaigns, the last 24 hours."""

from __future__ import annotations

from datetime import datetime, time

from flask import render_template
from flask.typing import ResponseReturnValue

from console import charts, web
from console.views import KARACHI, blp
from core.db import utcnow
from services import accounts, campaigns, reports


@blp.route("/")
@web.signed_in
def overview() -> ResponseReturnValue:
    session, account_id = web.db(), web.account_id()
    now = utcnow()
    today = datetime.combine(now.astimezone(KARACHI).date(), time.min, tzinfo=KARACHI)
    active = [(c, campaigns.statistics(session, c), campaigns.not_dialing(c))
              for c in reports.active_campaigns(session, account_id)]
    return render_template(
        "overview.html", money=accounts.balance(session, account_id),
        today=reports.calls_by_status(session, account_id, today), active=active,
        chart=charts.hourly(reports.calls_per_hour(session, account_id, now)),
    )
