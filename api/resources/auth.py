"""POST /auth/login and POST /auth/refresh: short-lived JWT access tokens."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import current_app
from flask_smorest import Blueprint

from api.auth import bearer_token, decode_jwt, issue_tokens, unauthorized
from api.context import db
from api.limits import LOGIN, route_limit
from core.credentials import verify_password
from core.db import utcnow
from core.models import Account, User

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Log in and refresh tokens")


class LoginSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1024))


class TokenSchema(ma.Schema):
    access_token = ma.fields.String()
    refresh_token = ma.fields.String()
    token_type = ma.fields.String()
    expires_in = ma.fields.Integer(metadata={"description": "seconds until the access token expires"})


def _expires_in() -> int:
    return int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


@blp.route("/login", methods=["POST"])
@route_limit(LOGIN)
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])
def login(body: dict[str, Any]) -> dict[str, Any]:
    """Exchange email and password for an access token and a refresh token."""
    session = db()
    user = session.execute(
        sa.select(User).where(User.email == body["email"].strip().lower())
    ).scalar_one_or_none()
    ok = verify_password(user.password_hash if user else None, body["password"])
    if not ok or user is None or not user.active:
        raise unauthorized("Email or password is incorrect.", "INVALID_CREDENTIALS")
    account = session.get(Account, user.account_id)
    if account is None or not account.active:
        raise unauthorized("This account is disabled.", "ACCOUNT_DISABLED")
    user.last_login_at = utcnow()
    session.commit()
    return {**issue_tokens(user), "expires_in": _expires_in()}


@blp.route("/refresh", methods=["POST"])
@blp.response(200, TokenSchema)
@blp.doc(description="Send the refresh token as `Authorization: Bearer <refresh token>`.")
def refresh() -> dict[str, Any]:
    """Renew the access token (and rotate the refresh token)."""
    token = bearer_token()
    if token is None:
        raise unauthorized("Send 'Authorization: Bearer <refresh token>'.")
    claims = decode_jwt(token, "refresh")
    user = db().get(User, str(claims["sub"]))
    if user is None or not user.active:
        raise unauthorized("The token's user no longer exists or is disabled.", "INVALID_TOKEN")
    return {**issue_tokens(user), "expires_in": _expires_in()}
