"""What a console view needs from the app: its wiring (settings, SQL, queues, audio files), the
request's SQL session, the signed-in user, the rate limits, and how a refusal is shown."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from core.models import User
from core.rate_limits import CREATE, EXTENSION, GLOBAL, UPLOAD_ACCOUNT, Figures, RateLimits, hit_in
from services import accounts
from services.audio import AudioFiles
from services.errors import Refused
from services.uploads import check_pending_imports

F = TypeVar("F", bound=Callable[..., Any])
SESSION_KEYS = ("uid", "sid", "gen")


def wiring() -> Any:
    """The application's services as ``create_app`` wired them (``api.context.Services``)."""
    return current_app.extensions["zenscall"]


def settings() -> Any:
    return wiring().settings


def db() -> Session:
    """The request's SQL session (closed at teardown)."""
    if "console_db" not in g:
        g.console_db = wiring().sessions()
    return g.console_db  # type: ignore[no-any-return]


def close_db(_exc: BaseException | None = None) -> None:
    session_ = g.pop("console_db", None)
    if session_ is not None:
        session_.close()


def audio_files() -> AudioFiles:
    w = wiring()
    return AudioFiles(w.settings, w.audio, w.work_queue)


def user() -> User:
    return g.console_user  # type: ignore[no-any-return]


def account_id() -> str:
    return user().account_id


def load_user() -> User | None:
    """The signed-in user of this request's session cookie, or None (and the cookie is cleared)."""
    if "console_user" in g:
        return g.console_user  # type: ignore[no-any-return]
    found = None
    if all(key in session for key in SESSION_KEYS):
        found = accounts.signed_in_user(db(), session["uid"], session["sid"], int(session["gen"]))
        if found is None:
            session.clear()
    g.console_user = found
    return found


def signed_in(view: F) -> F:
    """The view needs a signed-in user: else to the sign-in page (and back here afterwards)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if load_user() is None:
            back = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("console.login", next=back))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def go(url: str) -> ResponseReturnValue:
    """After a form: to ``url`` (303). A page's script that sent the form itself (an upload with
    a progress bar) gets the address instead, and goes there: its messages are then shown."""
    if request.headers.get("X-Console-Upload") == "1":
        return jsonify(location=url)
    return redirect(url, 303)


def limiter() -> RateLimits:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


class Limited(Exception):
    def __init__(self, figures: Figures) -> None:
        super().__init__(str(figures.item))
        self.figures = figures


def limit(spec: str, scope: str, bucket: str) -> None:
    """Count this request in ``bucket``'s ``spec`` (the API's limits and buckets): ``Limited``
    when one is full."""
    full = hit_in(limiter(), spec, scope, bucket)
    if full is not None:
        raise Limited(full)


def csv_upload_limits() -> None:
    """The API's limits of a CSV upload (campaign or do-not-call list), before its body is read:
    creations per user, imports pending per account (429 ``TOO_MANY_IMPORTS``), uploads per
    account."""
    settings_, account = settings(), account_id()
    limit(settings_.ratelimit_create, CREATE, f"user:{user().id}")
    check_pending_imports(db(), account, settings_.max_pending_imports)
    limit(settings_.ratelimit_upload, UPLOAD_ACCOUNT, f"account:{account}")


def client_bucket() -> str:
    return "ip:" + (request.remote_addr or "unknown")


def count_request() -> None:
    """The API's application-wide limit (``RATELIMIT_DEFAULT``), in the same buckets: a user's
    pages share the budget of that user's access tokens; signed out, the client's address."""
    current = load_user()
    limit(settings().ratelimit_default, GLOBAL, f"user:{current.id}" if current else client_bucket())


def limited_page(exc: Limited) -> ResponseReturnValue:
    retry = max(1, int(exc.figures.reset_at - time.time()))
    body = render_template("error.html", status=429, title="Too many requests",
                           message=f"Rate limit exceeded ({exc.figures.item}). Try again in {retry} seconds.")
    return body, 429, {"Retry-After": str(retry)}


def refused_page(exc: Refused) -> ResponseReturnValue:
    """A refusal outside a form (another tenant's id: 404): the error page."""
    if exc.status == 404:
        return not_found_page()
    return render_template("error.html", status=exc.status, title=exc.code, message=exc.message), exc.status


def not_found_page() -> ResponseReturnValue:
    return render_template("error.html", status=404, title="Not found",
                           message="There is no such page in your account."), 404


def act(action: Callable[[], Any], done: str | Callable[[Any], str], back: str, *,
        missing_is_404: bool = True) -> ResponseReturnValue:
    """A form's action: its refusal shown above the page it goes back to (a missing row as the
    404 page, unless ``missing_is_404`` is off), else ``done`` (or ``done(result)``); then to
    ``back`` (303)."""
    try:
        result = action()
    except Refused as exc:
        if exc.status == 404 and missing_is_404:
            raise
        show_refusal(exc)
    else:
        flash(done(result) if callable(done) else done, "info")
    return redirect(back, 303)


def show_refusal(exc: Refused) -> None:
    """A refused form: its message (and the fields' messages) above the form."""
    details = "; ".join(f"{field}: {' '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                        for field, msgs in exc.details.items()
                        if isinstance(msgs, list) and msgs != [exc.message])  # not said twice
    flash(f"{exc.message}" + (f" ({details})" if details and details not in exc.message else "") + f" [{exc.code}]",
          "error")
