"""Sign in, sign out, change the password."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from console import web
from console.views import blp
from core.rate_limits import LOGIN, PASSWORD
from services import accounts
from services.errors import Refused


def _safe_next(target: str | None) -> str:
    """Back to a page of this site only (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("console.overview")


@blp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if request.method == "GET":
        if web.load_user() is not None:
            return redirect(url_for("console.overview"))
        return render_template("login.html", next=request.args.get("next", ""))
    email = request.form.get("email", "").strip().lower()[:254]
    password = request.form.get("password", "")[:1024]
    # the API's login limit, per address, and the same figure per account (email): guesses
    # spread over many addresses still stop
    spec = web.settings().ratelimit_login
    web.limit(spec, LOGIN, web.client_bucket())
    web.limit(spec, LOGIN, f"email:{email}")
    try:
        user = accounts.authenticate(web.db(), email, password)
    except Refused as exc:
        web.db().rollback()
        flash(exc.message, "error")
        return render_template("login.html", next=request.form.get("next", ""), email=email), 401
    sign_in = accounts.start_sign_in(web.db(), user, web.settings().console_session_hours)
    session.clear()
    session.update(uid=user.id, sid=sign_in, gen=user.token_generation)
    return redirect(_safe_next(request.form.get("next")), 303)


@blp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    if web.load_user() is not None:
        accounts.end_sign_in(web.db(), session["sid"])
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("console.login"), 303)


@blp.route("/password", methods=["GET", "POST"])
@web.signed_in
def password() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("password.html")
    web.limit(web.settings().ratelimit_login, PASSWORD, f"user:{web.user().id}")
    new = request.form.get("new_password", "")
    if new != request.form.get("confirm_password", ""):
        flash("The two new passwords differ.", "error")
        return render_template("password.html"), 422
    try:
        accounts.change_password(web.db(), web.user().id, request.form.get("current_password", ""), new)
    except accounts.AccountError as exc:
        web.db().rollback()
        flash(str(exc), "error")
        return render_template("password.html"), 422
    except Refused as exc:
        web.db().rollback()
        flash(exc.message, "error")
        return render_template("password.html"), 401
    session.clear()  # every sign-in of this user has ended, this one too
    flash("Your password was changed. Every session has ended: sign in with the new password.", "info")
    return redirect(url_for("console.login"), 303)
