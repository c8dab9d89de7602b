"""Webhooks: the account's endpoints (create with the secret shown once, change, delete, rotate,
ping), an endpoint's deliveries (filter, page, redeliver), the signing secret of status_callback
URLs and the balance-alert threshold. Every action is ``webhooks``' function the API calls."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from console import web
from console.views import blp, karachi
from core.models import WebhookEndpoint
from services.errors import Refused
from services.pages import paginate
from webhooks import balance_alert, endpoints
from webhooks.signing import ROTATION_OVERLAP

DELIVERY_STATUSES = ("SUCCEEDED", "FAILED")
OVERLAP_HOURS = int(ROTATION_OVERLAP.total_seconds() // 3600)


def _page_no() -> int:
    return max(1, request.args.get("page", 1, type=int) or 1)


def _form_changes() -> dict[str, Any]:
    """The endpoint form: its URL, ticked events and description (blank: none)."""
    return {"url": request.form.get("url", "").strip(), "events": request.form.getlist("events"),
            "description": request.form.get("description", "").strip() or None}


def _list_page(new_endpoint: WebhookEndpoint | None = None, status: int = 200,
               form: dict[str, Any] | None = None) -> ResponseReturnValue:
    session, account_id = web.db(), web.account_id()
    items, meta = paginate(session, endpoints.list_query(account_id), _page_no(), 20)
    return render_template("webhooks.html", endpoints=items, pagination=meta, new_endpoint=new_endpoint,
                           choices=endpoints.EVENT_CHOICES, form=form or {"events": ["*"]},
                           signing=endpoints.signing_secret(session, account_id),
                           threshold=balance_alert.threshold(session, account_id),
                           overlap_hours=OVERLAP_HOURS), status


@blp.route("/webhooks")
@web.signed_in
def webhooks() -> ResponseReturnValue:
    return _list_page()


@blp.route("/webhooks", methods=["POST"])
@web.signed_in
def create_webhook() -> ResponseReturnValue:
    form = _form_changes()
    try:
        made = endpoints.create(web.db(), web.settings(), web.account_id(), form["url"], form["events"],
                                form["description"])
    except Refused as exc:
        web.db().rollback()
        web.show_refusal(exc)
        return _list_page(status=exc.status, form=form)
    return _list_page(new_endpoint=made, status=201)  # its secret: in this answer only


def _endpoint_page(ep: WebhookEndpoint, new_secret: str | None = None) -> ResponseReturnValue:
    status = request.args.get("status") or None
    if status not in (None, *DELIVERY_STATUSES):
        web.show_refusal(Refused(422, "VALIDATION_ERROR", f"status must be one of {', '.join(DELIVERY_STATUSES)}."))
        status = None
    items, meta = paginate(web.db(), endpoints.deliveries(web.db(), ep.id, status), _page_no(), 25)
    return render_template("webhook.html", ep=ep, deliveries=items, pagination=meta, status=status,
                           statuses=DELIVERY_STATUSES, choices=endpoints.EVENT_CHOICES, new_secret=new_secret,
                           overlap_hours=OVERLAP_HOURS)


@blp.route("/webhooks/<webhook_id>")
@web.signed_in
def webhook(webhook_id: str) -> ResponseReturnValue:
    return _endpoint_page(endpoints.own(web.db(), web.account_id(), webhook_id))


@blp.route("/webhooks/<webhook_id>", methods=["POST"])
@web.signed_in
def change_webhook(webhook_id: str) -> ResponseReturnValue:
    session, settings = web.db(), web.settings()
    ep = endpoints.own(session, web.account_id(), webhook_id)
    changes = {**_form_changes(), "enabled": request.form.get("enabled") == "on"}
    if changes["enabled"] == ep.enabled:
        del changes["enabled"]  # unchanged: a disabled endpoint keeps its reason and date
    return web.act(lambda: endpoints.update(session, settings, ep, changes), "The endpoint is saved.",
                   url_for("console.webhook", webhook_id=webhook_id))


@blp.route("/webhooks/<webhook_id>/delete", methods=["POST"])
@web.signed_in
def delete_webhook(webhook_id: str) -> ResponseReturnValue:
    ep = endpoints.own(web.db(), web.account_id(), webhook_id)
    url = ep.url
    endpoints.delete(web.db(), ep)
    flash(f"The endpoint {url} is deleted: nothing more is sent to it.", "info")
    return redirect(url_for("console.webhooks"), 303)


@blp.route("/webhooks/<webhook_id>/rotate-secret", methods=["POST"])
@web.signed_in
def rotate_webhook_secret(webhook_id: str) -> ResponseReturnValue:
    ep = endpoints.own(web.db(), web.account_id(), webhook_id)
    return _endpoint_page(ep, new_secret=endpoints.rotate(web.db(), ep))  # shown in this answer only


@blp.route("/webhooks/<webhook_id>/test", methods=["POST"])
@web.signed_in
def ping_webhook(webhook_id: str) -> ResponseReturnValue:
    ep = endpoints.own(web.db(), web.account_id(), webhook_id)
    event_id = endpoints.ping(web.db(), web.settings(), ep)
    flash(f"A ping event ({event_id}) is on its way: its delivery shows below once it is tried.", "info")
    return redirect(url_for("console.webhook", webhook_id=webhook_id), 303)


@blp.route("/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver", methods=["POST"])
@web.signed_in
def redeliver_webhook(webhook_id: str, delivery_id: str) -> ResponseReturnValue:
    session, account_id = web.db(), web.account_id()
    endpoints.own(session, account_id, webhook_id)
    send = endpoints.redeliver(session, web.settings(), account_id, delivery_id, endpoint_id=webhook_id)
    flash(f"The event {send.event_id} is sent again: its new attempt shows below.", "info")
    return redirect(url_for("console.webhook", webhook_id=webhook_id), 303)


@blp.route("/webhooks/signing-secret", methods=["POST"])
@web.signed_in
def rotate_signing_secret() -> ResponseReturnValue:
    row = endpoints.rotate_signing_secret(web.db(), web.account_id())
    flash(f"The signing secret of status_callback URLs is new; the old one also signs until "
          f"{karachi(row.previous_secret_expires_at)}.", "info")
    return redirect(url_for("console.webhooks") + "#signing-secret", 303)


@blp.route("/webhooks/balance-alert", methods=["POST"])
@web.signed_in
def set_balance_alert() -> ResponseReturnValue:
    value = request.form.get("low_balance_threshold", "").strip().replace(",", "") or None

    def done(amount: Any) -> str:
        return "No balance alert is sent." if amount is None else f"balance.low is sent below PKR {amount}."

    return web.act(lambda: balance_alert.set_threshold(web.db(), web.account_id(), value), done,
                   url_for("console.webhooks") + "#balance-alert")
