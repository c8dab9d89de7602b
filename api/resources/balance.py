"""GET /balance and GET /billing/transactions: the account's money and its ledger."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import BalanceSchema, LedgerEntrySchema
from billing.rating import money_str
from core.models import Account, LedgerEntry
from core.states import LedgerKind

blp = Blueprint("billing", __name__, url_prefix="/api/v1", description="Balance and ledger")


class LedgerArgs(PageArgs):
    kind = ma.fields.String(validate=ma.validate.OneOf([k.value for k in LedgerKind]))
    call_id = ma.fields.String()


@blp.route("/balance", methods=["GET"])
@require_auth
@blp.response(200, BalanceSchema)
def balance() -> dict[str, Any]:
    """Balance, the amount reserved for calls in progress, what is available, and the rate."""
    account = db().get(Account, current().account_id)
    assert account is not None
    return {
        "account_id": account.id,
        "balance": account.balance,
        "reserved": account.reserved,
        "available": account.available,
        "currency": account.currency,
        "rate": {
            "per_minute": account.rate_per_minute,
            "pulse_seconds": account.pulse_seconds,
            "description": f"PKR {money_str(account.rate_per_minute)} per minute, billed per "
                           f"{account.pulse_seconds}-second pulse of answered time",
        },
        "max_concurrent_calls": account.max_concurrent_calls,
    }


@blp.route("/billing/transactions", methods=["GET"])
@require_auth
@blp.arguments(LedgerArgs, location="query")
@blp.response(200, envelope_schema(LedgerEntrySchema, "LedgerPage"))
def transactions(args: dict[str, Any]) -> dict[str, Any]:
    """The append-only ledger, newest first. The balance is the sum of `amount`."""
    query = sa.select(LedgerEntry).where(LedgerEntry.account_id == current().account_id)
    if "kind" in args:
        query = query.where(LedgerEntry.kind == args["kind"])
    if "call_id" in args:
        query = query.where(LedgerEntry.call_id == args["call_id"])
    items, meta = paginate(db(), query.order_by(LedgerEntry.id.desc()), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}
