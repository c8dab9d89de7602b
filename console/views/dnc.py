"""The do-not-call list: add, bulk upload, search, remove."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from console import web
from console.views import blp
from services import dnc as dnc_service
from services import phones
from services.errors import Refused, invalid
from services.pages import paginate
from services.uploads import checked_head, display_filename


@blp.route("/dnc")
@web.signed_in
def dnc() -> ResponseReturnValue:
    session, account_id = web.db(), web.account_id()
    page = max(1, request.args.get("page", 1, type=int) or 1)
    search = request.args.get("phone_number", "").strip()
    phone = None
    if search:
        try:
            phone = phones.e164(search)
        except Refused as exc:
            web.show_refusal(exc)
    if search and phone is None:
        items: list[Any] = []
        meta: dict[str, Any] = {"page": 1, "total": 0, "total_pages": 0, "has_next": False, "has_prev": False}
    else:
        items, meta = paginate(session, dnc_service.list_query(account_id, phone), page, 25)
    imports, _ = paginate(session, dnc_service.imports_query(account_id), 1, 5)
    return render_template("dnc.html", numbers=items, pagination=meta, search=search, imports=imports)


@blp.route("/dnc", methods=["POST"])
@web.signed_in
def add_dnc() -> ResponseReturnValue:
    def add() -> tuple[str, bool]:
        phone = phones.e164(request.form.get("phone_number", ""))
        reason = request.form.get("reason", "").strip()
        if len(reason) > 200:
            raise invalid("reason", "Longer than maximum length 200.")
        return phone, dnc_service.add(web.db(), web.account_id(), phone, reason or None)[1]

    return web.act(add, lambda done: f"{done[0]} {'is added to' if done[1] else 'was already on'} the do-not-call "
                   "list.", url_for("console.dnc"))


@blp.route("/dnc/remove", methods=["POST"])
@web.signed_in
def remove_dnc() -> ResponseReturnValue:
    def remove() -> str:
        phone = phones.e164(request.form.get("phone_number", ""))
        dnc_service.remove(web.db(), web.account_id(), phone)
        return phone

    return web.act(remove, lambda phone: f"{phone} is removed from the do-not-call list.", url_for("console.dnc"),
                   missing_is_404=False)


@blp.route("/dnc/bulk", methods=["POST"])
@web.signed_in
def bulk_dnc() -> ResponseReturnValue:
    settings, account_id, session = web.settings(), web.account_id(), web.db()
    try:
        web.csv_upload_limits()
        upload = request.files.get("csv_file")
        if upload is None or not upload.filename:
            raise invalid("csv_file", "Choose a CSV file of phone numbers.")
        filename = display_filename(upload.filename, "csv_file", "upload.csv")
        head = checked_head(upload.stream, "csv_file")
        dnc_service.start_import(session, settings, web.wiring().work_queue, account_id, filename, head,
                                 upload.stream)
    except Refused as exc:
        web.show_refusal(exc)
    else:
        flash(f"“{filename}” is being imported: its numbers appear below once it completes.", "info")
    return redirect(url_for("console.dnc"), 303)
