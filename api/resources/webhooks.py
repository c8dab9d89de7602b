"""/webhooks: endpoints that receive the account's signed events, their deliveries, the signing
secret of ``status_callback`` URLs. See the README's "Webhooks"."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import MoneyField
from core.models import WebhookEndpoint
from services.errors import Refused
from webhooks import balance_alert, endpoints
from webhooks.endpoints import EVENT_CHOICES, MAX_DESCRIPTION

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks", description="Signed event webhooks")


def _events_field(**kwargs: Any) -> ma.fields.List:
    return ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(EVENT_CHOICES)),
                          validate=ma.validate.Length(min=1, max=len(EVENT_CHOICES)), **kwargs)


class NewWebhookArgs(ma.Schema):
    url = ma.fields.String(required=True, metadata={"description": "https URL (http in development)"})
    events = _events_field(required=True, metadata={"description": 'event types, or "*" for all'})
    description = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=MAX_DESCRIPTION))


class WebhookChangeArgs(ma.Schema):
    url = ma.fields.String()
    events = _events_field()
    description = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=MAX_DESCRIPTION))
    enabled = ma.fields.Boolean()


class WebhookSchema(ma.Schema):
    id = ma.fields.String()
    url = ma.fields.String()
    events = ma.fields.List(ma.fields.String())
    description = ma.fields.String(allow_none=True)
    enabled = ma.fields.Boolean()
    disabled_reason = ma.fields.String(allow_none=True, metadata={
        "description": "FAILING: every attempt failed for WEBHOOK_DISABLE_AFTER_HOURS (3 days); BY_USER"})
    disabled_at = ma.fields.AwareDateTime(allow_none=True)
    failing_since = ma.fields.AwareDateTime(allow_none=True)
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class WebhookWithSecretSchema(WebhookSchema):
    secret = ma.fields.String(metadata={"description": "whsec_...: shown on creation and rotation only"})


class SecretSchema(ma.Schema):
    secret = ma.fields.String()
    previous_secret_expires_at = ma.fields.AwareDateTime(allow_none=True, metadata={
        "description": "until then the previous secret also signs (a second v1=)"})


class PingSchema(ma.Schema):
    event_id = ma.fields.String()


class DeliveryFilterArgs(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf(["SUCCEEDED", "FAILED"]))


class DeliverySchema(ma.Schema):
    id = ma.fields.String()
    event_id = ma.fields.String()
    event_type = ma.fields.String()
    url = ma.fields.String()
    attempt = ma.fields.Integer(attribute="attempt_no")
    status = ma.fields.String(metadata={"enum": ["SUCCEEDED", "FAILED"]})
    http_status = ma.fields.Integer(allow_none=True)
    latency_ms = ma.fields.Integer()
    error = ma.fields.String(allow_none=True)
    next_retry_at = ma.fields.AwareDateTime(allow_none=True)
    created_at = ma.fields.AwareDateTime()


class RedeliverySchema(ma.Schema):
    event_id = ma.fields.String()
    status = ma.fields.String()
    next_attempt_at = ma.fields.AwareDateTime()


class BalanceAlertSchema(ma.Schema):
    low_balance_threshold = MoneyField(allow_none=True, metadata={
        "description": "PKR: a charge taking the balance below it sends balance.low; null: never"})


def _pkr_amount(value: str) -> None:
    try:
        balance_alert.parse(value)
    except Refused as exc:
        raise ma.ValidationError(exc.message) from None


class BalanceAlertArgs(ma.Schema):
    low_balance_threshold = ma.fields.String(required=True, allow_none=True, validate=_pkr_amount, metadata={
        "description": "PKR as a decimal string (\"500.00\"), or null for no alert", "example": "500.00"})


def _own(webhook_id: str) -> WebhookEndpoint:
    return endpoints.own(db(), current().account_id, webhook_id)


@blp.route("", methods=["POST"])
@require_auth
@blp.arguments(NewWebhookArgs)
@blp.response(201, WebhookWithSecretSchema)
def create(body: dict[str, Any]) -> Any:
    """Add an endpoint. The response carries its signing secret, shown this once."""
    return endpoints.create(db(), services().settings, current().account_id, body["url"], body["events"],
                            body["description"])


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(WebhookSchema, "WebhookPage"))
def list_webhooks(args: dict[str, Any]) -> dict[str, Any]:
    """The account's endpoints, newest first."""
    items, meta = paginate(db(), endpoints.list_query(current().account_id), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/signing-secret", methods=["GET"])
@require_auth
@blp.response(200, SecretSchema)
def get_signing_secret() -> Any:
    """The secret that signs events sent to ``status_callback`` URLs (made on first use)."""
    return endpoints.signing_secret(db(), current().account_id)


@blp.route("/signing-secret", methods=["POST"])
@require_auth
@blp.response(200, SecretSchema)
def rotate_signing_secret() -> Any:
    """A new signing secret for ``status_callback`` URLs; the old one also signs for 24 hours."""
    return endpoints.rotate_signing_secret(db(), current().account_id)


@blp.route("/balance-alert", methods=["GET"])
@require_auth
@blp.response(200, BalanceAlertSchema)
def get_balance_alert() -> dict[str, Any]:
    """The balance below which a charge sends ``balance.low``."""
    return {"low_balance_threshold": balance_alert.threshold(db(), current().account_id)}


@blp.route("/balance-alert", methods=["PUT"])
@require_auth
@blp.arguments(BalanceAlertArgs)
@blp.response(200, BalanceAlertSchema)
def set_balance_alert(body: dict[str, Any]) -> dict[str, Any]:
    """Set (or with null, remove) the ``balance.low`` threshold, in PKR."""
    threshold = balance_alert.set_threshold(db(), current().account_id, body["low_balance_threshold"])
    return {"low_balance_threshold": threshold}


@blp.route("/<string:webhook_id>", methods=["GET"])
@require_auth
@blp.response(200, WebhookSchema)
def get_webhook(webhook_id: str) -> Any:
    """One endpoint (never its secret)."""
    return _own(webhook_id)


@blp.route("/<string:webhook_id>", methods=["PATCH"])
@require_auth
@blp.arguments(WebhookChangeArgs)
@blp.response(200, WebhookSchema)
def change(body: dict[str, Any], webhook_id: str) -> Any:
    """Change the URL, events or description; ``enabled: true`` turns a disabled endpoint on again."""
    return endpoints.update(db(), services().settings, _own(webhook_id), body)


@blp.route("/<string:webhook_id>", methods=["DELETE"])
@require_auth
@blp.response(204)
def delete(webhook_id: str) -> None:
    """Remove the endpoint; its pending sends are dropped."""
    endpoints.delete(db(), _own(webhook_id))


@blp.route("/<string:webhook_id>/rotate-secret", methods=["POST"])
@require_auth
@blp.response(200, WebhookWithSecretSchema)
def rotate_secret(webhook_id: str) -> Any:
    """A new secret; deliveries carry a second signature made with the old one for 24 hours."""
    ep = _own(webhook_id)
    endpoints.rotate(db(), ep)
    return ep


@blp.route("/<string:webhook_id>/test", methods=["POST"])
@require_auth
@blp.response(202, PingSchema)
def test(webhook_id: str) -> dict[str, str]:
    """Send a ``ping`` event to this endpoint (it shows in its deliveries)."""
    ep = _own(webhook_id)
    return {"event_id": endpoints.ping(db(), services().settings, ep)}


@blp.route("/<string:webhook_id>/deliveries", methods=["GET"])
@require_auth
@blp.arguments(DeliveryFilterArgs, location="query")
@blp.response(200, envelope_schema(DeliverySchema, "WebhookDeliveryPage"))
def deliveries(args: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """Every attempt to this endpoint, newest first: event, HTTP status, latency, error, attempt
    number and when the next retry comes."""
    ep = _own(webhook_id)
    items, meta = paginate(db(), endpoints.deliveries(db(), ep.id, args.get("status")), args["page"],
                           args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/deliveries/<string:delivery_id>/redeliver", methods=["POST"])
@require_auth
@blp.response(202, RedeliverySchema)
def redeliver(delivery_id: str) -> dict[str, Any]:
    """Send that delivery's event to its receiver again (same event id and body)."""
    send = endpoints.redeliver(db(), services().settings, current().account_id, delivery_id)
    return {"event_id": send.event_id, "status": send.status, "next_attempt_at": send.next_attempt_at}

