"""API keys: create (the key shown once), list, revoke."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from console import web
from console.views import blp
from services import accounts
from services.pages import paginate


def _page(new_key: str | None = None, status: int = 200) -> ResponseReturnValue:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    items, meta = paginate(web.db(), accounts.keys_query(web.account_id()), page, 20)
    return render_template("keys.html", keys=items, pagination=meta, new_key=new_key), status


@blp.route("/keys")
@web.signed_in
def keys() -> ResponseReturnValue:
    return _page()


@blp.route("/keys", methods=["POST"])
@web.signed_in
def create_key() -> ResponseReturnValue:
    session = web.db()
    try:
        _row, key = accounts.create_api_key(session, web.account_id(), request.form.get("name", "").strip())
    except accounts.AccountError as exc:
        session.rollback()
        flash(str(exc), "error")
        return _page(status=422)
    session.commit()
    return _page(new_key=key, status=201)  # shown in this answer only, never stored


@blp.route("/keys/<key_id>/revoke", methods=["POST"])
@web.signed_in
def revoke_key(key_id: str) -> ResponseReturnValue:
    row = accounts.revoke_key(web.db(), web.account_id(), key_id)
    web.wiring().api_keys.forget_key(row.id)  # this process at once; the others within API_KEY_CACHE_SECONDS
    flash(f"The key {row.prefix}… ({row.name}) is revoked.", "info")
    return redirect(url_for("console.keys"), 303)
