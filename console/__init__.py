"""The customer web console: server-rendered pages on the same Flask app as the API.

The pages call the same service functions as the API (``services``), so every rule (limits,
isolation, validation, money) holds alike. Sign-in is a signed session cookie naming a login of
the user (``services.accounts.start_sign_in``), ended by sign-out and by a password change; every
form carries a CSRF token (Flask-WTF's ``CSRFProtect``, checked for the console's views only: the
API authenticates with bearer credentials, which a browser never sends by itself).
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from core.settings import Settings

csrf = CSRFProtect()


def init_console(app: Flask, settings: Settings) -> list[str]:
    """Register the console on ``app``; returns its endpoints (the API's limiter leaves them to
    the console, which counts them per signed-in user)."""
    from console import web
    from console.views import blp

    app.config.update(
        SESSION_COOKIE_NAME="zc_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in the console's before_request only
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as the sign-in's session
        WTF_CSRF_SSL_STRICT=settings.is_production,
    )
    csrf.init_app(app)
    app.register_blueprint(blp)
    app.teardown_appcontext(web.close_db)
    return [name for name in app.view_functions if name.startswith(f"{blp.name}.")]
