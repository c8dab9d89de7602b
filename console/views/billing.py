"""Billing: the ledger with kinds and the running balance, CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue

from billing.rating import money_str
from console import web
from console.views import blp
from core.spreadsheet import csv_chunks
from core.states import LedgerKind
from services import accounts
from services.pages import paginate


def _kind() -> str | None:
    kind = request.args.get("kind", "")
    return kind if kind in {k.value for k in LedgerKind} else None


@blp.route("/billing")
@web.signed_in
def billing() -> ResponseReturnValue:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    session, account_id = web.db(), web.account_id()
    items, meta = paginate(session, accounts.ledger_query(account_id, _kind()), page, 25)
    return render_template("billing.html", entries=items, pagination=meta, money=accounts.balance(session, account_id),
                           kinds=[k.value for k in LedgerKind], kind=_kind() or "")


@blp.route("/billing.csv")
@web.signed_in
def export_ledger() -> ResponseReturnValue:
    query = accounts.ledger_query(web.account_id(), _kind()).execution_options(yield_per=2000)
    sessions = web.wiring().sessions

    def rows() -> Iterator[list[Any]]:
        yield ["id", "created_at", "kind", "amount_pkr", "hold_pkr", "balance_after_pkr", "reserved_after_pkr",
               "call_id", "description"]
        with sessions() as session:
            for e in session.execute(query).scalars():
                yield [e.id, e.created_at.isoformat(), e.kind.value, money_str(e.amount), money_str(e.hold),
                       money_str(e.balance_after), money_str(e.reserved_after), e.call_id or "", e.description]

    return Response(stream_with_context(csv_chunks(rows())), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="ledger.csv"'})
