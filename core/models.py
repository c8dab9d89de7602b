"""SQL tables: the source of truth for accounts, calls, attempts, campaigns and money.

Redis only ever holds queues, rate-limit counters and cap leases; everything here
survives a Redis flush. Ids are canonical UUID strings (36 chars) so they read the
same on MariaDB and SQLite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.call_states import CallStatus
from core.campaign_states import CampaignStatus
from core.db import Base, Money, UTCDateTime, utcnow
from core.states import AudioStatus, ImportStatus, LedgerKind

ZERO = Decimal("0")


def new_id() -> str:
    return str(uuid.uuid4())


def _enum(enum_cls: type) -> sa.Enum:
    # stored as plain strings (no native ENUM) so new states need no ALTER on MariaDB
    return sa.Enum(enum_cls, native_enum=False, length=16, validate_strings=True,
                   values_callable=lambda e: [m.value for m in e])


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # balance == SUM(ledger.amount); reserved == SUM(ledger.hold); available = balance - reserved
    balance: Mapped[Decimal] = mapped_column(Money, default=ZERO)
    reserved: Mapped[Decimal] = mapped_column(Money, default=ZERO)
    currency: Mapped[str] = mapped_column(sa.String(3), default="PKR")
    rate_per_minute: Mapped[Decimal] = mapped_column(Money)
    pulse_seconds: Mapped[int] = mapped_column(sa.Integer)
    max_concurrent_calls: Mapped[int] = mapped_column(sa.Integer)
    # a charge that takes the balance below it sends balance.low (None: never)
    low_balance_threshold: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # a call is never free and never pays the customer: refused by the CLI too
        sa.CheckConstraint("rate_per_minute > 0", name="ck_accounts_rate_positive"),
        sa.CheckConstraint("pulse_seconds > 0", name="ck_accounts_pulse_positive"),
        sa.CheckConstraint("balance >= 0", name="ck_accounts_balance_nonneg"),
        sa.CheckConstraint("reserved >= 0", name="ck_accounts_reserved_nonneg"),
        sa.CheckConstraint("reserved <= balance", name="ck_accounts_reserved_le_balance"),
    )

    @property
    def available(self) -> Decimal:
        return self.balance - self.reserved


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16), default="owner")
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # every access and refresh token carries it ("gen"); a password change bumps it, and
    # tokens issued before no longer work
    token_generation: Mapped[int] = mapped_column(sa.Integer, default=0)

    account: Mapped[Account] = relationship()


class RefreshFamily(Base):
    """One login's chain of refresh tokens (see ``core/refresh_tokens.py``).

    Each refresh replaces ``current_jti``; a token of the family that is not the current one
    was used before, so the family is revoked (reuse detection).
    """

    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id"), index=True)
    current_jti: Mapped[str] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the current token's expiry
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(32))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    # the visible start of the key ("zc_live_AbCd1234"), used to find the row
    prefix: Mapped[str] = mapped_column(sa.String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AudioFile(Base):
    __tablename__ = "audio_files"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[AudioStatus] = mapped_column(_enum(AudioStatus), default=AudioStatus.READY)
    original_filename: Mapped[str | None] = mapped_column(sa.String(255))
    source_format: Mapped[str] = mapped_column(sa.String(32))
    # the converted file's figures; 0 and "" until the audio is READY (the API shows them as null)
    duration_ms: Mapped[int] = mapped_column(sa.Integer)
    size_bytes: Mapped[int] = mapped_column(sa.Integer)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    # why the worker's conversion refused the file (status FAILED), in the API's error shape
    error_code: Mapped[str | None] = mapped_column(sa.String(32))
    error_message: Mapped[str | None] = mapped_column(sa.String(500))
    error_details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    audio_id: Mapped[str] = mapped_column(sa.ForeignKey("audio_files.id"))
    status: Mapped[CampaignStatus] = mapped_column(_enum(CampaignStatus), default=CampaignStatus.IMPORTING)
    max_retries: Mapped[int] = mapped_column(sa.Integer, default=0)
    retry_delay_seconds: Mapped[int] = mapped_column(sa.Integer, default=300)
    concurrent_limit: Mapped[int] = mapped_column(sa.Integer, default=10)
    caller_id: Mapped[str | None] = mapped_column(sa.String(20))
    # where this campaign's events (and its calls') are also sent, signed with the account's secret
    status_callback: Mapped[str | None] = mapped_column(sa.String(2048))
    # daily calling window, local time of TIMEZONE ("09:00" - "21:00" Asia/Karachi by default)
    window_start: Mapped[str] = mapped_column(sa.String(5), default="09:00")
    window_end: Mapped[str] = mapped_column(sa.String(5), default="21:00")
    timezone: Mapped[str] = mapped_column(sa.String(40), default="Asia/Karachi")
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(sa.String(64))
    # the uploaded CSV and what its import found
    csv_filename: Mapped[str | None] = mapped_column(sa.String(255))
    csv_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rows_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_accepted: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_duplicate: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_dnc: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_invalid: Mapped[int] = mapped_column(sa.Integer, default=0)
    import_error: Mapped[str | None] = mapped_column(sa.String(500))
    imported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (sa.Index("ix_campaigns_account_status", "account_id", "status"),)


class CampaignRejectedRow(Base):
    """A CSV row the import refused, with its line number and why."""

    __tablename__ = "campaign_rejected_rows"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(sa.ForeignKey("campaigns.id"))
    line_no: Mapped[int] = mapped_column(sa.Integer)
    raw_value: Mapped[str] = mapped_column(sa.String(100))
    reason: Mapped[str] = mapped_column(sa.String(100))

    __table_args__ = (sa.Index("ix_rejected_campaign_line", "campaign_id", "line_no"),)


class DncNumber(Base):
    """An account's do-not-call list: checked at import and again at dial time."""

    __tablename__ = "dnc_numbers"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"))
    phone_number: Mapped[str] = mapped_column(sa.String(20))
    reason: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("account_id", "phone_number", name="uq_dnc_account_phone"),)


class DncImport(Base):
    """A do-not-call list upload (``POST /dnc/bulk``), imported by the worker, with its progress and
    summary. ``invalid_rows`` is JSON: the first refused rows, ``[{"line", "value", "reason"}]``."""

    __tablename__ = "dnc_imports"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"))
    status: Mapped[ImportStatus] = mapped_column(_enum(ImportStatus), default=ImportStatus.QUEUED)
    filename: Mapped[str | None] = mapped_column(sa.String(255))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    progress_percent: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_added: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_invalid: Mapped[int] = mapped_column(sa.Integer, default=0)
    invalid_rows: Mapped[str | None] = mapped_column(sa.Text)
    error_code: Mapped[str | None] = mapped_column(sa.String(40))
    error_message: Mapped[str | None] = mapped_column(sa.String(500))
    error_line: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.Index("ix_dnc_imports_account_created", "account_id", "created_at"),
        sa.Index("ix_dnc_imports_status_updated", "status", "updated_at"),
    )


class Call(Base):
    """One number to reach with one message; it keeps one row across its retries."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"))
    campaign_id: Mapped[str | None] = mapped_column(sa.ForeignKey("campaigns.id"))
    audio_id: Mapped[str] = mapped_column(sa.ForeignKey("audio_files.id"))
    phone_number: Mapped[str] = mapped_column(sa.String(20))  # E.164
    caller_id: Mapped[str | None] = mapped_column(sa.String(20))
    # where this call's events are also sent, signed with the account's signing secret
    status_callback: Mapped[str | None] = mapped_column(sa.String(2048))
    status: Mapped[CallStatus] = mapped_column(_enum(CallStatus), default=CallStatus.QUEUED)
    max_retries: Mapped[int] = mapped_column(sa.Integer, default=0)
    retry_delay_seconds: Mapped[int] = mapped_column(sa.Integer, default=300)
    attempts_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the attempt currently out on FreeSWITCH (None when nothing is live)
    live_attempt_id: Mapped[str | None] = mapped_column(sa.String(36))
    # the id the next attempt will use; its reservation may already exist
    next_attempt_id: Mapped[str | None] = mapped_column(sa.String(36))
    # the terms of that reservation (frozen when it was made; the attempt keeps them)
    rate_per_minute: Mapped[Decimal | None] = mapped_column(Money)
    pulse_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    last_cause: Mapped[str | None] = mapped_column(sa.String(64))
    last_sip_status: Mapped[int | None] = mapped_column(sa.Integer)
    billsec: Mapped[int] = mapped_column(sa.Integer, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=ZERO)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    attempts: Mapped[list[CallAttempt]] = relationship(
        back_populates="call", order_by="CallAttempt.attempt_no", lazy="selectin"
    )

    __table_args__ = (
        # the dispatcher's sweep: due calls by status and time
        sa.Index("ix_calls_due", "status", "next_attempt_at"),
        sa.Index("ix_calls_account_created", "account_id", "created_at"),
        # dispatch per source (one campaign, or one account's single calls) and statistics
        sa.Index("ix_calls_source_due", "campaign_id", "status", "account_id", "next_attempt_at"),
        # the dialer's look for live calls whose customer asked to hang up
        sa.Index("ix_calls_cancel", "status", "cancel_requested_at"),
        sa.UniqueConstraint("campaign_id", "phone_number", name="uq_calls_campaign_phone"),
        sa.Index("ix_calls_account_phone", "account_id", "phone_number"),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_calls_idempotency"),
    )


class CallAttempt(Base):
    """One originate on FreeSWITCH; its id is the channel's origination_uuid."""

    __tablename__ = "call_attempts"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    call_id: Mapped[str] = mapped_column(sa.ForeignKey("calls.id"))
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    attempt_no: Mapped[int] = mapped_column(sa.Integer)
    node: Mapped[str] = mapped_column(sa.String(64))
    # the dialer process that claimed it (``dialer_instances.id``): only it, or whoever adopts
    # the attempt once that process is gone, may judge how the attempt ended
    owner: Mapped[str | None] = mapped_column(sa.String(80))
    status: Mapped[CallStatus] = mapped_column(_enum(CallStatus), default=CallStatus.DIALING)
    dialed_number: Mapped[str] = mapped_column(sa.String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ringing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hangup_cause: Mapped[str | None] = mapped_column(sa.String(64))
    q850_cause: Mapped[int | None] = mapped_column(sa.Integer)
    sip_status: Mapped[int | None] = mapped_column(sa.Integer)
    billsec: Mapped[int] = mapped_column(sa.Integer, default=0)
    duration: Mapped[int] = mapped_column(sa.Integer, default=0)
    played_ms: Mapped[int | None] = mapped_column(sa.Integer)
    reserved_amount: Mapped[Decimal] = mapped_column(Money, default=ZERO)
    # the rate and pulse of the reservation: the attempt is charged at these, whatever the
    # account's rate becomes while it is live
    rate_per_minute: Mapped[Decimal | None] = mapped_column(Money)
    pulse_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    cost: Mapped[Decimal] = mapped_column(Money, default=ZERO)

    call: Mapped[Call] = relationship(back_populates="attempts")

    __table_args__ = (
        sa.UniqueConstraint("call_id", "attempt_no", name="uq_attempts_call_no"),
        # reconciliation: non-final attempts per node
        sa.Index("ix_attempts_open", "node", "ended_at"),
    )


class DialerInstance(Base):
    """A running dialer process and its heartbeat: attempts it owns are judged by it alone
    until its heartbeat is stale."""

    __tablename__ = "dialer_instances"

    id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    node: Mapped[str] = mapped_column(sa.String(64))
    pid: Mapped[int] = mapped_column(sa.Integer)
    hostname: Mapped[str] = mapped_column(sa.String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_dialer_instances_node", "node", "heartbeat_at"),)


class LedgerEntry(Base):
    """Append-only money movement. ``amount`` moves the balance, ``hold`` the reserved sum."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"))
    kind: Mapped[LedgerKind] = mapped_column(_enum(LedgerKind))
    amount: Mapped[Decimal] = mapped_column(Money, default=ZERO)
    hold: Mapped[Decimal] = mapped_column(Money, default=ZERO)
    balance_after: Mapped[Decimal] = mapped_column(Money)
    reserved_after: Mapped[Decimal] = mapped_column(Money)
    call_id: Mapped[str | None] = mapped_column(sa.String(36))
    attempt_id: Mapped[str | None] = mapped_column(sa.String(36))
    description: Mapped[str] = mapped_column(sa.String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.Index("ix_ledger_account_id", "account_id", "id"),
        # one reservation, one release and one charge per attempt, however often
        # an ESL event repeats
        sa.UniqueConstraint("attempt_id", "kind", name="uq_ledger_attempt_kind"),
    )


# --------------------------------------------------------------------------- webhooks


class WebhookEndpoint(Base):
    """An account's receiver of signed events (``/webhooks``).

    ``secret`` signs every delivery (it must be kept to compute HMACs); after a rotation the
    previous one also signs until ``previous_secret_expires_at`` (24 h). ``failing_since`` is the
    first failed attempt since the last success; an endpoint failing for
    ``WEBHOOK_DISABLE_AFTER_HOURS`` is disabled (``disabled_reason``)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    description: Mapped[str | None] = mapped_column(sa.String(500))
    events: Mapped[list[str]] = mapped_column(sa.JSON)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    secret: Mapped[str] = mapped_column(sa.String(80))
    previous_secret: Mapped[str | None] = mapped_column(sa.String(80))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(sa.String(64))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookSigningSecret(Base):
    """The account's secret for ``status_callback`` URLs (one per account, made on first use)."""

    __tablename__ = "webhook_signing_secrets"

    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(sa.String(80))
    previous_secret: Mapped[str | None] = mapped_column(sa.String(80))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the state change that causes
    it (``core.outbox``). ``data`` is what the event fixes at that moment (the object's status);
    ``payload`` is the body as first sent, kept so every retry sends the same bytes.
    ``fanned_out_at`` is set once a send per receiver was made."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)  # evt_<32 hex>
    account_id: Mapped[str] = mapped_column(sa.String(36))
    type: Mapped[str] = mapped_column(sa.String(40))
    subject_type: Mapped[str] = mapped_column(sa.String(16))  # call, campaign, account, webhook
    subject_id: Mapped[str] = mapped_column(sa.String(36))
    sequence: Mapped[int] = mapped_column(sa.BigInteger)
    data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    payload: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.Index("ix_webhook_events_fanout", "fanned_out_at", "created_at"),)


class WebhookSend(Base):
    """One event to one receiver (an endpoint, or a ``status_callback`` URL): PENDING until a 2xx
    (SUCCEEDED) or the retry window ends (FAILED). ``lease_until``: a job for it is queued or
    running; past it the sweeper enqueues it again (a lost job, a killed worker)."""

    __tablename__ = "webhook_sends"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(sa.String(36))
    account_id: Mapped[str] = mapped_column(sa.String(36))
    endpoint_id: Mapped[str | None] = mapped_column(sa.String(36))
    callback_url: Mapped[str | None] = mapped_column(sa.String(2048))
    # endpoint id or "callback:<sha256 of the URL>": ordering and concurrency are per target
    target: Mapped[str] = mapped_column(sa.String(80))
    subject: Mapped[str] = mapped_column(sa.String(60))  # "call:<id>": ordered per target and subject
    sequence: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16), default="PENDING")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retry_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        sa.Index("ix_webhook_sends_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_sends_order", "target", "subject", "status", "sequence"),
        sa.Index("ix_webhook_sends_event", "event_id"),
    )


class WebhookDelivery(Base):
    """One HTTP attempt of a send, as ``GET /webhooks/{id}/deliveries`` lists it."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    send_id: Mapped[str] = mapped_column(sa.String(36))
    account_id: Mapped[str] = mapped_column(sa.String(36))
    endpoint_id: Mapped[str | None] = mapped_column(sa.String(36))
    event_id: Mapped[str] = mapped_column(sa.String(36))
    event_type: Mapped[str] = mapped_column(sa.String(40))
    url: Mapped[str] = mapped_column(sa.String(2048))
    attempt_no: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))  # SUCCEEDED, FAILED
    http_status: Mapped[int | None] = mapped_column(sa.Integer)
    latency_ms: Mapped[int] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.String(500))
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),)
