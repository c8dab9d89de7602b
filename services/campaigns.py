"""Campaigns: create one from a CSV upload (imported by the worker), list, look up, pause /
resume / cancel, statistics, why a campaign is not dialing, and its report and rejected rows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import sqlalchemy as sa
from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from billing.rating import money_str
from campaigns.importer import enqueue_import, upload_path
from core import campaigns as lifecycle
from core.campaign_states import INSUFFICIENT_BALANCE, CampaignStatus
from core.db import utcnow
from core.models import AudioFile, Call, Campaign, CampaignRejectedRow
from core.names import name_problem
from core.settings import Settings
from core.window import Window
from services.audio import own_ready_audio
from services.errors import Refused, invalid
from services.tenancy import owned
from services.uploads import save_upload

# the ranges a campaign's settings are allowed (the API's form declares the same ones from here)
MAX_RETRIES = (0, 10)
CONCURRENT_LIMIT = (1, 1000)
RETRY_DELAY_SECONDS = (30, 86_400)
CALLER_ID = re.compile(r"\+?[0-9]{3,15}")  # ASCII digits only, optionally after one +


@dataclass(frozen=True)
class NewCampaign:
    name: str
    audio_id: str
    max_retries: int
    retry_delay_seconds: int
    concurrent_limit: int
    window_start: str  # HH:MM, Asia/Karachi
    window_end: str
    caller_id: str | None = None
    start_at: datetime | None = None
    status_callback: str | None = None  # checked by the caller (webhooks.urls.checked)


def check_new(session: Session, account_id: str, new: NewCampaign) -> tuple[AudioFile, Window]:
    """The campaign's name and settings (422), audio (404 / 409 as for calls) and calling window
    (422 when empty): what is checked before the upload is read."""
    problem = name_problem(new.name)
    if problem is not None or not 0 < len(new.name) <= 200:
        raise invalid("name", f"The name {problem or 'must be 1 to 200 characters'}.")
    for field, value, (low, high) in (("max_retries", new.max_retries, MAX_RETRIES),
                                      ("concurrent_limit", new.concurrent_limit, CONCURRENT_LIMIT),
                                      ("retry_delay_seconds", new.retry_delay_seconds, RETRY_DELAY_SECONDS)):
        if not low <= value <= high:
            raise invalid(field, f"Must be greater than or equal to {low} and less than or equal to {high}.")
    if new.caller_id and CALLER_ID.fullmatch(new.caller_id) is None:
        raise invalid("caller_id", "must be 3 to 15 digits, optionally after a +")
    audio = own_ready_audio(session, account_id, new.audio_id)
    try:
        window = Window.of(new.window_start, new.window_end)
    except ValueError as exc:
        raise invalid("window_end", str(exc)) from None
    return audio, window


def create(session: Session, settings: Settings, queue: Queue, account_id: str, new: NewCampaign,
           filename: str, head: bytes, stream: IO[bytes]) -> Campaign:
    """Store the CSV (``head`` already checked) and the campaign IMPORTING, and enqueue its
    import. 404/409 for the audio (as calls), 422 for an empty window, 413 past ``MAX_CSV_BYTES``,
    503 when the queue is unreachable. Commits."""
    audio, window = check_new(session, account_id, new)
    now = utcnow()
    campaign = Campaign(
        account_id=account_id, name=new.name, audio_id=audio.id, status=CampaignStatus.IMPORTING,
        max_retries=new.max_retries, retry_delay_seconds=new.retry_delay_seconds,
        concurrent_limit=new.concurrent_limit, caller_id=(new.caller_id or "").lstrip("+") or None,
        window_start=window.start.strftime("%H:%M"), window_end=window.end.strftime("%H:%M"),
        start_at=new.start_at.astimezone(UTC) if new.start_at else None,
        csv_filename=filename, status_callback=new.status_callback, created_at=now, updated_at=now,
    )
    session.add(campaign)
    session.flush()
    campaign.csv_bytes = save_upload(session, head, stream, upload_path(settings, campaign.id),
                                     settings.max_csv_bytes, "csv_file")
    session.commit()
    try:
        enqueue_import(queue, campaign.id)
    except Exception:  # Redis down: the campaign cannot start; say so instead of leaving it stuck
        campaign.status = CampaignStatus.FAILED
        campaign.import_error = "the import queue is unavailable; create the campaign again"
        session.commit()
        raise Refused(503, "SERVICE_UNAVAILABLE", "The import queue is unavailable. Try again shortly.") from None
    return campaign


def own_campaign(session: Session, account_id: str, campaign_id: str) -> Campaign:
    return owned(session, Campaign, account_id, campaign_id, "Campaign")


def list_query(account_id: str, status: str | None = None) -> sa.Select[Any]:
    """The account's campaigns, newest first, optionally by status."""
    query = sa.select(Campaign).where(Campaign.account_id == account_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    return query.order_by(Campaign.created_at.desc(), Campaign.id)


ACTIONS = ("pause", "resume", "cancel")


def change(session: Session, account_id: str, campaign_id: str, action: str, *,
           hang_up_live: bool = False) -> Campaign:
    """Pause, resume or cancel the account's campaign; 409 ``INVALID_CAMPAIGN_STATE`` when its
    state does not allow it. Cancel ends pending calls; calls playing now finish unless
    ``hang_up_live``. Commits."""
    campaign = own_campaign(session, account_id, campaign_id)
    if action == "pause":
        done = lifecycle.pause(session, campaign.id)
    elif action == "resume":
        done = lifecycle.resume(session, campaign.id)
    elif action == "cancel":
        done = lifecycle.cancel(session, campaign.id, hang_up_live=hang_up_live)["changed"] == 1
    else:
        raise ValueError(f"unknown campaign action {action!r}")
    session.refresh(campaign)
    if not done:
        raise Refused(409, "INVALID_CAMPAIGN_STATE", f"Cannot {action} a campaign that is {campaign.status.value}.",
                      {"status": campaign.status.value})
    return campaign


def statistics(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Counts by status, answer rate, cost, progress and time left (``core.campaigns.Stats``)."""
    return lifecycle.stats(session, campaign).as_dict()


@dataclass(frozen=True)
class NotDialing:
    """Why an unfinished campaign places no call now, and when it can start again (None: not
    by itself; the customer resumes it)."""

    reason: str  # IMPORTING, SCHEDULED, OUTSIDE_CALLING_WINDOW, PAUSED_FOR_BALANCE, PAUSED
    message: str
    next_dialing_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message, "next_dialing_at": self.next_dialing_at}


def not_dialing(campaign: Campaign, now: datetime | None = None) -> NotDialing | None:
    """Why ``campaign`` is not dialing at ``now``; None when it dials (or has ended)."""
    now = now or utcnow()
    status = CampaignStatus(campaign.status)
    window = Window.of(campaign.window_start, campaign.window_end, campaign.timezone)
    local = f"{campaign.window_start}-{campaign.window_end} {campaign.timezone}"
    if status is CampaignStatus.IMPORTING:
        return NotDialing("IMPORTING", "The phone list is being imported.", None)
    if status is CampaignStatus.PAUSED:
        if campaign.pause_reason == INSUFFICIENT_BALANCE:
            return NotDialing("PAUSED_FOR_BALANCE", "Paused: the balance cannot pay for the next call. "
                              "Top up, then resume.", None)
        return NotDialing("PAUSED", "Paused. Resume it to continue dialing.", None)
    if status is CampaignStatus.SCHEDULED:
        start = campaign.start_at or now
        opening = window.next_open(max(start, now))
        return NotDialing("SCHEDULED", "Scheduled: dialing starts at its start time"
                          + ("" if opening == max(start, now) else f", inside its calling window ({local})") + ".",
                          opening)
    if status is CampaignStatus.RUNNING and not window.contains(now):
        return NotDialing("OUTSIDE_CALLING_WINDOW", f"Outside its calling window ({local}).", window.next_open(now))
    return None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def report_rows(sessions: sessionmaker[Session], campaign_id: str) -> Iterator[list[Any]]:
    """Per-number results (header first): final status, attempts, last cause, SIP status, billsec,
    cost; streamed from its own session."""
    yield ["phone_number", "status", "attempts", "last_cause", "sip_status", "billsec", "cost_pkr",
           "answered_at", "ended_at", "call_id"]
    with sessions() as session:
        result = session.execute(
            sa.select(Call.phone_number, Call.status, Call.attempts_count, Call.last_cause, Call.last_sip_status,
                      Call.billsec, Call.cost, Call.answered_at, Call.ended_at, Call.id)
            .where(Call.campaign_id == campaign_id).order_by(Call.created_at, Call.id)
            .execution_options(yield_per=2000)
        )
        for phone, status, attempts, cause, sip, billsec, cost, answered, ended, cid in result:
            yield [phone, getattr(status, "value", status), attempts, cause or "", sip or "", billsec,
                   money_str(cost), _iso(answered), _iso(ended), cid]


def rejected_rows(sessions: sessionmaker[Session], campaign_id: str, limit: int | None = None) -> Iterator[list[Any]]:
    """The CSV rows the import refused (header first): line, value, reason."""
    yield ["line", "value", "reason"]
    with sessions() as session:
        query = (sa.select(CampaignRejectedRow.line_no, CampaignRejectedRow.raw_value, CampaignRejectedRow.reason)
                 .where(CampaignRejectedRow.campaign_id == campaign_id).order_by(CampaignRejectedRow.line_no))
        if limit is not None:
            query = query.limit(limit)
        result = session.execute(query.execution_options(yield_per=2000))
        yield from ([line, value, reason] for line, value, reason in result)
