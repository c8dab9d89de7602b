"""Taking a single call in, and cancelling one: the SQL side, one transaction each.

A new call is written ``QUEUED`` together with the reservation of its first
attempt's worst-case cost (the attempt id is chosen here and reused by the dialer,
whose reservation step is idempotent per attempt id). So a flood of requests can
never promise more calls than the balance pays for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rq import Queue
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from billing import ledger
from billing.rating import format_pkr, reservation_for
from core import call_states as cs
from core import outbox
from core.call_states import CallStatus, Step
from core.db import utcnow
from core.models import ZERO, Account, AudioFile, Call, new_id
from core.queues import DialNudges, enqueue_cancel
from core.states import AudioStatus
from services.audio import own_ready_audio
from services.errors import Refused, invalid, not_found
from services.tenancy import owned

KARACHI = ZoneInfo("Asia/Karachi")


@dataclass(frozen=True)
class CallTerms:
    """What placing a call reads besides the request: the message and the account's terms."""

    audio_id: str
    audio_status: AudioStatus
    duration_ms: int
    rate_per_minute: Decimal
    pulse_seconds: int
    account_active: bool
    # False: remembered from an earlier call of this process (``known_terms``), not read now;
    # ``create_call`` has the reservation's UPDATE check them
    checked: bool = True


@dataclass(frozen=True)
class NewCall:
    account_id: str
    terms: CallTerms
    phone_number: str  # E.164
    caller_id: str | None
    max_retries: int
    retry_delay_seconds: int
    idempotency_key: str | None = None
    status_callback: str | None = None  # checked by the caller (webhooks.urls)


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request."""


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def find_by_idempotency_key(session: Session, account_id: str, key: str) -> Call | None:
    return session.execute(
        sa.select(Call).where(Call.account_id == account_id, Call.idempotency_key == key)
    ).scalar_one_or_none()


def _terms_statement() -> sa.Select[Any]:
    audio, acc = AudioFile.__table__.c, Account.__table__.c
    return (
        sa.select(audio.id, audio.status, audio.duration_ms, acc.rate_per_minute, acc.pulse_seconds, acc.active)
        .select_from(AudioFile.__table__.join(Account.__table__, acc.id == audio.account_id))
        .where(audio.id == sa.bindparam("audio_id"), audio.account_id == sa.bindparam("account_id"))
    )


def _reserve_if_terms() -> sa.Update:
    """The reservation's UPDATE for remembered terms: it holds only while the account is active
    at that rate and pulse and the message is READY with that length (what ``ready_terms`` checks)."""
    audio, acc = AudioFile.__table__.c, Account.__table__.c
    return ledger.movement_update().where(
        acc.active == sa.true(),
        acc.rate_per_minute == sa.bindparam("terms_rate", type_=acc.rate_per_minute.type),
        acc.pulse_seconds == sa.bindparam("terms_pulse", type_=acc.pulse_seconds.type),
        sa.exists().where(audio.id == sa.bindparam("terms_audio_id", type_=audio.id.type),
                          audio.account_id == acc.id,
                          audio.status == AudioStatus.READY,
                          audio.duration_ms == sa.bindparam("terms_duration_ms", type_=audio.duration_ms.type)),
    )


# built once with bound parameters: no statement building or cache-key work per request
_TERMS = _terms_statement()
_INSERT_CALL = sa.insert(Call.__table__)
_RESERVE_IF_TERMS = _reserve_if_terms()

# The terms this process last read for a message, by (account id, audio id), so
# that the next call with it can skip the terms SELECT: ``create_call`` then has the
# reservation's UPDATE check them in SQL, and reads them again when they changed.
_KNOWN: dict[tuple[str, str], CallTerms] = {}
KNOWN_TERMS_MAX = 10_000


def call_terms(session: Session, account_id: str, audio_id: str) -> CallTerms | None:
    """The account's audio ``audio_id`` with the account's rate, pulse and state, in one
    round trip; None when the account has no such audio."""
    row = session.connection().execute(_TERMS, {"audio_id": audio_id, "account_id": account_id}).one_or_none()
    return None if row is None else CallTerms(*row)


def known_terms(account_id: str, audio_id: str) -> CallTerms | None:
    """The terms ``ready_terms`` last gave in this process for this message (unchecked), else None."""
    return _KNOWN.get((account_id, audio_id))


def create_call(session: Session, new: NewCall, request_fingerprint: str | None) -> tuple[Call, bool]:
    """Store a QUEUED call and its first reservation; (call, created). Commits.

    With an idempotency key, a repeat of the same request returns the first call
    (created=False); the same key with another request raises IdempotencyMismatch.
    Raises ledger.InsufficientBalance when the first attempt cannot be paid for.
    A created call is returned as written (not attached to the session; no attempts yet).
    Unchecked terms (``known_terms``) are checked by the reservation's UPDATE; when they no
    longer hold, they are read again (``ready_terms``: 404, 409 or 403 as for a first call).
    """
    if new.idempotency_key:
        existing = find_by_idempotency_key(session, new.account_id, new.idempotency_key)
        if existing is not None:
            session.commit()  # nothing written; ends the read transaction
            return _replay(existing, request_fingerprint)
    if not new.terms.checked:
        try:
            return _write_call(session, new, request_fingerprint)
        except ledger.NotReserved:  # the terms changed, or the balance is short (rolled back): find out which
            _KNOWN.pop((new.account_id, new.terms.audio_id), None)
            new = replace(new, terms=ready_terms(session, new.account_id, new.terms.audio_id))
    return _write_call(session, new, request_fingerprint)


def _write_call(session: Session, new: NewCall, request_fingerprint: str | None) -> tuple[Call, bool]:
    terms = new.terms
    attempt_id = new_id()
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id(), "account_id": new.account_id, "audio_id": terms.audio_id,
        "phone_number": new.phone_number, "caller_id": new.caller_id,
        "status": cs.check(Step.CREATE, None, CallStatus.QUEUED), "max_retries": new.max_retries,
        "retry_delay_seconds": new.retry_delay_seconds, "attempts_count": 0, "next_attempt_at": now,
        "next_attempt_id": attempt_id,
        # the terms of the reservation made below: the first attempt is charged at them
        "rate_per_minute": terms.rate_per_minute, "pulse_seconds": terms.pulse_seconds,
        "billsec": 0, "cost": ZERO, "created_at": now, "updated_at": now,
    }
    if new.idempotency_key:
        values.update(idempotency_key=new.idempotency_key, request_fingerprint=request_fingerprint)
    if new.status_callback:
        values["status_callback"] = new.status_callback
    # the columns left out are NULL (no campaign, nothing live, no outcome yet)
    only_if = None if terms.checked else (_RESERVE_IF_TERMS, {
        "terms_rate": terms.rate_per_minute, "terms_pulse": terms.pulse_seconds,
        "terms_audio_id": terms.audio_id, "terms_duration_ms": terms.duration_ms})
    try:
        # The reservation's conditional UPDATE comes first: it takes the account row's
        # exclusive lock directly. Inserting the call first would share-lock the row (its
        # foreign key) and two requests upgrading their shared locks would deadlock.
        amount = reservation_for(terms.duration_ms, terms.rate_per_minute, terms.pulse_seconds)
        ledger.reserve_new(session, new.account_id, amount, call_id=values["id"], attempt_id=attempt_id,
                           then=(_INSERT_CALL, values), only_if=only_if)
        session.commit()
    except IntegrityError:
        # a concurrent request with the same idempotency key won the race
        session.rollback()
        if new.idempotency_key:
            existing = find_by_idempotency_key(session, new.account_id, new.idempotency_key)
            if existing is not None:
                return _replay(existing, request_fingerprint)
        raise
    except BaseException:
        session.rollback()
        raise
    call = Call(**values)
    set_committed_value(call, "attempts", [])  # a call just written has no attempt yet
    return call, True


def _replay(existing: Call, request_fingerprint: str | None) -> tuple[Call, bool]:
    if request_fingerprint is not None and existing.request_fingerprint != request_fingerprint:
        raise IdempotencyMismatch(existing.id)
    return existing, False


def end_queued(session: Session, call_id: str, step: Step, status: CallStatus, cause: str, *,
               now: datetime | None = None, cancel_requested: bool = False) -> bool:
    """End a call that is not out on FreeSWITCH (as ``step`` allows), releasing the reservation
    made for its next attempt. Commits. The conditional UPDATE races safely with the dialer's
    claim (same condition): exactly one of them wins."""
    now = now or utcnow()
    values: dict[str, object] = {"status": cs.check(step, CallStatus.QUEUED, status), "last_cause": cause,
                                 "ended_at": now, "next_attempt_at": None, "updated_at": now}
    if cancel_requested:
        values["cancel_requested_at"] = now
    done = session.execute(
        sa.update(Call).where(Call.id == call_id, Call.status.in_(step.sources)).values(values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if done != 1:
        session.rollback()
        return False
    attempt_id, account_id, attempts = session.execute(
        sa.select(Call.next_attempt_id, Call.account_id, Call.attempts_count).where(Call.id == call_id)).one()
    outbox.write(session, [outbox.call_event(account_id, call_id, status, attempts, now, queued_end=True)])
    if attempt_id:
        ledger.settle(session, attempt_id, ledger.ZERO)
    session.commit()
    return True


def cancel(session: Session, call_id: str) -> bool:
    """The customer cancels a call: a queued one ends CANCELLED at once; a live one is marked
    and the dialer hangs it up (its hangup then ends it CANCELLED). Commits. False when the call
    is already final. The two steps are tried again if the call moved between them (an attempt
    that ended and was queued for a retry meanwhile)."""
    for _ in range(3):
        if end_queued(session, call_id, Step.CANCEL_QUEUED, CallStatus.CANCELLED, cs.CANCELLED_BY_USER,
                      cancel_requested=True):
            return True
        now = utcnow()
        marked = session.execute(
            sa.update(Call)
            .where(Call.id == call_id, Call.status.in_(Step.REQUEST_CANCEL.sources))
            .values(cancel_requested_at=sa.func.coalesce(Call.cancel_requested_at, now), updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if marked == 1:
            return True
        status = session.execute(sa.select(Call.status).where(Call.id == call_id)).scalar_one_or_none()
        if status is None or CallStatus(status).is_final:
            return False
    return False



def own_call(session: Session, account_id: str, call_id: str) -> Call:
    return owned(session, Call, account_id, call_id, "Call")


def ready_terms(session: Session, account_id: str, audio_id: str) -> CallTerms:
    """The account's READY audio with the account's terms (one SELECT); 404 / 409 as
    ``services.audio.own_ready_audio``, 403 when the account was disabled. Remembered for
    ``known_terms``."""
    terms = call_terms(session, account_id, audio_id)
    if terms is None or terms.audio_status != AudioStatus.READY:
        own_ready_audio(session, account_id, audio_id)  # raises the 404, or the 409 with the state and error
        terms = call_terms(session, account_id, audio_id)  # it became READY in between
        if terms is None or terms.audio_status != AudioStatus.READY:
            raise not_found("Audio file")  # and changed again since
    if not terms.account_active:
        raise Refused(403, "ACCOUNT_DISABLED", "This account is disabled.")
    if len(_KNOWN) >= KNOWN_TERMS_MAX:
        _KNOWN.clear()
    _KNOWN[(account_id, terms.audio_id)] = replace(terms, checked=False)
    return terms


def place(session: Session, nudges: DialNudges, new: NewCall, request_fingerprint: str | None) -> tuple[Call, bool]:
    """``create_call`` with its refusals (402 ``INSUFFICIENT_BALANCE``, 422
    ``IDEMPOTENCY_KEY_REUSED``), then the dialer's job for a new call; (call, created)."""
    try:
        call, created = create_call(session, new, request_fingerprint)
    except ledger.InsufficientBalance as exc:
        raise Refused(
            402, "INSUFFICIENT_BALANCE",
            f"Your balance is too low to make this call. Current balance: {format_pkr(exc.available)}",
            {"available": str(exc.available), "required": str(exc.required), "currency": "PKR"},
        ) from None
    except IdempotencyMismatch:
        raise Refused(422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was already used with a different request.",
                      {"Idempotency-Key": ["used with a different request body"]}) from None
    if created:
        nudges.call_written(call.id)  # the dialer's job, sent off the request
    return call, created


def cancel_own(session: Session, dial_queue: Queue, account_id: str, call_id: str) -> Call:
    """Cancel the account's call; 409 ``CALL_ALREADY_FINAL`` once it has ended. A live call is
    hung up by the dialer (its job is enqueued here)."""
    call = own_call(session, account_id, call_id)
    if call.status.is_final or not cancel(session, call.id):
        session.refresh(call)
        raise Refused(409, "CALL_ALREADY_FINAL", f"The call has already ended ({call.status.value}).",
                      {"status": call.status.value})
    session.refresh(call)
    if call.status.is_live:  # the dialer hangs it up (and keeps trying until the hangup comes)
        enqueue_cancel(dial_queue, call.id)
    return call


@dataclass(frozen=True)
class CallFilter:
    statuses: list[str] | None = None
    campaign_id: str | None = None
    phone_number: str | None = None  # E.164
    created_from: datetime | None = None
    created_before: datetime | None = None


def list_query(account_id: str, where: CallFilter) -> sa.Select[Any]:
    """The account's calls, newest first, filtered."""
    # the list shows no attempts: skip the relationship's eager "selectin" load
    query = sa.select(Call).options(lazyload(Call.attempts)).where(Call.account_id == account_id)
    if where.statuses:
        query = query.where(Call.status.in_(where.statuses))
    if where.campaign_id is not None:
        query = query.where(Call.campaign_id == where.campaign_id)
    if where.phone_number is not None:
        query = query.where(Call.phone_number == where.phone_number)
    if where.created_from is not None:
        query = query.where(Call.created_at >= where.created_from)
    if where.created_before is not None:
        query = query.where(Call.created_at < where.created_before)
    return query.order_by(Call.created_at.desc(), Call.id.desc())


def day_bound(field: str, raw: str, *, end: bool) -> datetime:
    """A filter bound: a date means the Asia/Karachi business day (``end``: the next day's start);
    a datetime without a zone is Asia/Karachi time. 422 otherwise."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time.min, tzinfo=KARACHI)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, "must be an ISO date (2026-11-26) or datetime with zone") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KARACHI)
    return moment
