"""The console's blueprint: every page group's views, the hooks each request passes (the API's
request budget, the CSRF check, the security headers) and the filters templates format with."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue
from flask.wrappers import Response
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import NotFound

from billing.rating import money_str
from console import csrf, web
from services.errors import Refused

HERE = Path(__file__).resolve().parent.parent
KARACHI = ZoneInfo("Asia/Karachi")
# the console's own assets only: no inline script or style, no other origin
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

blp = Blueprint("console", __name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"),
                static_url_path="/console/static")


@blp.before_request
def _guard() -> None:
    if request.endpoint == "console.static":
        return
    web.count_request()
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"  # balances, keys, numbers: never cached
    return response


@blp.app_template_filter("karachi")
def karachi(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A moment as Asia/Karachi wall time."""
    return "" if moment is None else moment.astimezone(KARACHI).strftime(fmt)


@blp.app_template_filter("pkr")
def pkr(amount: Decimal | None) -> str:
    if amount is None:
        return ""
    text = money_str(amount)
    whole, _, cents = text.lstrip("-").partition(".")
    return ("-" if text.startswith("-") else "") + f"PKR {int(whole):,}.{cents}"


@blp.errorhandler(web.Limited)
def _limited(exc: web.Limited) -> ResponseReturnValue:
    return web.limited_page(exc)


@blp.errorhandler(Refused)
def _refused(exc: Refused) -> ResponseReturnValue:
    return web.refused_page(exc)


@blp.errorhandler(NotFound)
def _not_found(_exc: NotFound) -> ResponseReturnValue:
    return web.not_found_page()


@blp.errorhandler(CSRFError)
def _csrf(exc: CSRFError) -> ResponseReturnValue:
    return render_template("error.html", status=400, title="Form expired",
                           message=f"{exc.description} Reload the page and try again."), 400


from console.views import (  # noqa: E402  (each module adds its views to blp)
    account,
    audio,
    billing,
    calls,
    campaigns,
    dnc,
    keys,
    overview,
    webhooks,
)

__all__ = ["account", "audio", "billing", "blp", "calls", "campaigns", "dnc", "keys", "overview", "webhooks"]
