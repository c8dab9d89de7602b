"""POST /auth/login, /auth/refresh and /auth/password: short-lived JWT access tokens,
single-use refresh tokens, and a password change that revokes every token issued before."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from flask_smorest import Blueprint

from api.auth import bearer_token, current, login_tokens, require_auth, rotated_tokens, unauthorized
from api.context import db
from api.errors import ApiError
from api.limits import LOGIN, PASSWORD, route_limit
from core.credentials import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, password_problem
from services import accounts
from services.errors import Refused

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Log in, refresh tokens, change the password")


class LoginSchema(ma.Schema):
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MAX_PASSWORD_LENGTH))


class TokenSchema(ma.Schema):
    access_token = ma.fields.String()
    refresh_token = ma.fields.String()
    token_type = ma.fields.String()
    expires_in = ma.fields.Integer(metadata={"description": "seconds until the access token expires"})


def _password_rule(value: str) -> None:
    problem = password_problem(value)
    if problem is not None:
        raise ma.ValidationError(problem)


class PasswordChangeSchema(ma.Schema):
    current_password = ma.fields.String(required=True,
                                        validate=ma.validate.Length(min=1, max=MAX_PASSWORD_LENGTH))
    new_password = ma.fields.String(required=True, validate=_password_rule,
                                    metadata={"minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH})


def _expires_in() -> int:
    return int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds())


@blp.route("/login", methods=["POST"])
@route_limit(LOGIN)
@blp.arguments(LoginSchema)
@blp.response(200, TokenSchema)
@blp.doc(security=[])
def login(body: dict[str, Any]) -> dict[str, Any]:
    """Exchange email and password for an access token and a refresh token."""
    try:
        user = accounts.authenticate(db(), body["email"], body["password"])
    except Refused as exc:
        raise unauthorized(exc.message, exc.code) from None
    return {**login_tokens(user), "expires_in": _expires_in()}


@blp.route("/refresh", methods=["POST"])
@blp.response(200, TokenSchema)
@blp.doc(description="Send the refresh token as `Authorization: Bearer <refresh token>`. Each refresh token "
                     "works once: use the new one this answer carries. Sending a used one again answers 401 "
                     "`INVALID_TOKEN` and revokes every token of that login.")
def refresh() -> dict[str, Any]:
    """Renew the access token (and rotate the refresh token)."""
    token = bearer_token()
    if token is None:
        raise unauthorized("Send 'Authorization: Bearer <refresh token>'.")
    return {**rotated_tokens(token), "expires_in": _expires_in()}


@blp.route("/password", methods=["POST"])
@require_auth
@route_limit(PASSWORD)
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
@blp.doc(description="Needs a user's access token (an API key answers 403). Every access and refresh token "
                     "issued before the change stops working, this request's too: log in again with the "
                     "new password. A wrong current password answers 401 `INVALID_CREDENTIALS`.")
def change_password(body: dict[str, Any]) -> None:
    """Change the password of the logged-in user."""
    principal = current()
    if principal.user_id is None:
        raise ApiError(403, "FORBIDDEN", "Changing a password needs a user's access token (JWT), not an API key.")
    try:
        accounts.change_password(db(), principal.user_id, body["current_password"], body["new_password"])
    except Refused as exc:
        raise unauthorized(exc.message, exc.code) from None
