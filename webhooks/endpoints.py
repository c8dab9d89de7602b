"""An account's webhook endpoints and signing secret: create, change, rotate, test, redeliver.

Each function takes a Session and commits. The API and the console both call these, so an
endpoint's rules (a safe URL, known events, ids of another account answering 404 as missing
ones) hold alike on both.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core import outbox
from core.db import utcnow
from core.models import WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookSend, WebhookSigningSecret
from core.settings import Settings
from services.errors import invalid, not_found
from services.tenancy import owned
from webhooks import signing
from webhooks.sweeper import PENDING, send_row
from webhooks.urls import checked

EVENT_CHOICES = ("*", *outbox.EVENT_TYPES)  # "*": every event type, also those added later
MAX_DESCRIPTION = 500


def own(session: Session, account_id: str, endpoint_id: str) -> WebhookEndpoint:
    """The account's endpoint ``endpoint_id``; 404 ``Webhook not found.`` for any other."""
    return owned(session, WebhookEndpoint, account_id, endpoint_id, "Webhook")


def list_query(account_id: str) -> sa.Select[Any]:
    """The account's endpoints, newest first."""
    return sa.select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id).order_by(
        WebhookEndpoint.created_at.desc(), WebhookEndpoint.id)


def checked_events(events: Any) -> list[str]:
    """The event types an endpoint subscribes to (sorted, once each), or a 422 naming ``events``."""
    if not isinstance(events, list | tuple) or not 1 <= len(events) <= len(EVENT_CHOICES):
        raise invalid("events", f"Choose 1 to {len(EVENT_CHOICES)} event types.")
    unknown = [e for e in events if e not in EVENT_CHOICES]
    if unknown:
        raise invalid("events", f"Unknown event type {unknown[0]!r}: one of {', '.join(EVENT_CHOICES)}.")
    return sorted(set(events))


def checked_description(description: str | None) -> str | None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise invalid("description", f"Longer than maximum length {MAX_DESCRIPTION}.")
    return description


def create(session: Session, settings: Settings, account_id: str, url: str, events: list[str],
           description: str | None) -> WebhookEndpoint:
    """A new endpoint (a 422 ``INVALID_WEBHOOK_URL`` for a URL ZensCall will not send to); its
    secret is readable on the returned row, to be shown this once."""
    url, events, description = checked(url, settings), checked_events(events), checked_description(description)
    now = utcnow()
    ep = WebhookEndpoint(account_id=account_id, url=url, events=events, description=description,
                         enabled=True, secret=signing.new_secret(), created_at=now, updated_at=now)
    session.add(ep)
    session.commit()
    return ep


def update(session: Session, settings: Settings, ep: WebhookEndpoint, changes: dict[str, Any]) -> WebhookEndpoint:
    """Change ``url``, ``events``, ``description`` or ``enabled`` (those of ``changes`` given)."""
    url = checked(changes["url"], settings) if "url" in changes else ep.url  # all checked before any is set
    events = checked_events(changes["events"]) if "events" in changes else ep.events
    description = checked_description(changes["description"]) if "description" in changes else ep.description
    ep.url, ep.events, ep.description = url, events, description
    if "enabled" in changes:
        ep.enabled = bool(changes["enabled"])
        if ep.enabled:  # turned on again: a fresh start
            ep.disabled_at, ep.disabled_reason, ep.failing_since = None, None, None
        elif ep.disabled_reason is None:
            ep.disabled_at, ep.disabled_reason = utcnow(), "BY_USER"
    ep.updated_at = utcnow()
    session.commit()
    return ep


def delete(session: Session, ep: WebhookEndpoint) -> None:
    """The endpoint and its pending sends go; its delivery history stays readable by nobody."""
    s = WebhookSend.__table__.c
    session.execute(sa.update(WebhookSend).where(s.endpoint_id == ep.id, s.status == PENDING)
                    .values(status="FAILED", lease_until=None, updated_at=utcnow()))
    session.delete(ep)
    session.commit()


def rotate(session: Session, row: WebhookEndpoint | WebhookSigningSecret) -> str:
    """A new secret; the old one keeps signing (as a second ``v1``) for 24 hours."""
    now = utcnow()
    row.previous_secret, row.previous_secret_expires_at = row.secret, now + signing.ROTATION_OVERLAP
    row.secret = signing.new_secret()
    session.commit()
    return row.secret


def rotate_signing_secret(session: Session, account_id: str) -> WebhookSigningSecret:
    row = signing_secret(session, account_id)
    rotate(session, row)
    return row


def signing_secret(session: Session, account_id: str) -> WebhookSigningSecret:
    """The account's secret for status_callback URLs, made on first use."""
    row = session.get(WebhookSigningSecret, account_id)
    if row is None:
        row = WebhookSigningSecret(account_id=account_id, secret=signing.new_secret(), created_at=utcnow())
        session.add(row)
        try:
            session.commit()
        except sa.exc.IntegrityError:  # made by a concurrent request
            session.rollback()
            row = session.get(WebhookSigningSecret, account_id)
            assert row is not None
    return row


def ping(session: Session, settings: Settings, ep: WebhookEndpoint) -> str:
    """A ``ping`` event for this endpoint only; its id."""
    now = utcnow()
    row = outbox.event(ep.account_id, outbox.PING, "webhook", ep.id, outbox.time_sequence(now), now,
                       {"webhook_id": ep.id, "url": ep.url})
    row["fanned_out_at"] = now  # its one send is made here
    outbox.write(session, [row])
    event = _Event(row)
    session.execute(sa.insert(WebhookSend.__table__),
                    [send_row(event, now, endpoint_id=ep.id, retry_hours=settings.webhook_retry_hours)])
    session.commit()
    return str(row["id"])


class _Event:
    def __init__(self, row: dict[str, Any]) -> None:
        self.id, self.account_id, self.sequence = row["id"], row["account_id"], row["sequence"]
        self.subject_type, self.subject_id = row["subject_type"], row["subject_id"]


def redeliver(session: Session, settings: Settings, account_id: str, delivery_id: str,
              endpoint_id: str | None = None) -> WebhookSend:
    """Send again the event of one delivery (of endpoint ``endpoint_id``, if given) to its
    receiver: PENDING now, with a new retry window. 404 for another account's delivery, or one
    whose event is gone."""
    d = session.get(WebhookDelivery, delivery_id)
    if d is None or d.account_id != account_id or endpoint_id not in (None, d.endpoint_id):
        raise not_found("Delivery")
    send = session.get(WebhookSend, d.send_id, with_for_update=True)
    if send is None or session.get(WebhookEvent, send.event_id) is None:
        session.rollback()
        raise not_found("Delivery")
    now = utcnow()
    if send.status != PENDING:
        send.status, send.lease_until = PENDING, None
        send.retry_until = now + timedelta(hours=settings.webhook_retry_hours)
    send.next_attempt_at = now
    session.commit()
    return send


def deliveries(session: Session, endpoint_id: str, status: str | None) -> sa.Select[Any]:
    query = sa.select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    return query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
