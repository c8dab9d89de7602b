"""GET /balance and GET /billing/transactions: the account's money and its ledger."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import BalanceSchema, LedgerEntrySchema
from core.states import LedgerKind
from services import accounts

blp = Blueprint("billing", __name__, url_prefix="/api/v1", description="Balance and ledger")


class LedgerArgs(PageArgs):
    kind = ma.fields.String(validate=ma.validate.OneOf([k.value for k in LedgerKind]))
    call_id = ma.fields.String()


@blp.route("/balance", methods=["GET"])
@require_auth
@blp.response(200, BalanceSchema)
def balance() -> dict[str, Any]:
    """Balance, the amount reserved for calls in progress, what is available, and the rate."""
    return accounts.balance(db(), current().account_id)


@blp.route("/billing/transactions", methods=["GET"])
@require_auth
@blp.arguments(LedgerArgs, location="query")
@blp.response(200, envelope_schema(LedgerEntrySchema, "LedgerPage"))
def transactions(args: dict[str, Any]) -> dict[str, Any]:
    """The append-only ledger, newest first. The balance is the sum of `amount`."""
    query = accounts.ledger_query(current().account_id, args.get("kind"), args.get("call_id"))
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}
