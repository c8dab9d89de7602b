"""``flask --app wsgi users create|set-password``: the users who log in to an account."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import fail, get_or_fail, out, services
from core.models import Account, User
from services.accounts import AccountError, create_user, set_password


def group(app: Flask) -> AppGroup:
    users_cli = AppGroup("users", help="Users who log in to an account (JWT).")

    @users_cli.command("create")
    @click.argument("account_id")
    @click.option("--email", required=True)
    @click.option("--password", required=True)
    def users_create(account_id: str, email: str, password: str) -> None:
        """Add a user (email + password login) to an existing account."""
        with services(app).sessions() as session:
            get_or_fail(session, Account, account_id, "account")
            try:
                user = create_user(session, account_id, email, password)
            except AccountError as exc:
                code = "CONFLICT" if "already exists" in str(exc) else "INVALID_USER"
                fail(str(exc), code)
            out({"user_id": user.id, "account_id": account_id, "email": user.email, "role": user.role})

    @users_cli.command("set-password")
    @click.argument("email")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
                  help="the new password (asked for when not given)")
    def users_set_password(email: str, password: str) -> None:
        """Set a user's password (e.g. a forgotten one). Every token issued before stops working."""
        with services(app).sessions() as session:
            user = session.execute(sa.select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
            if user is None:
                fail(f"no user with email {email}", "NOT_FOUND")
            try:
                set_password(session, user, password)
            except AccountError as exc:
                fail(str(exc), "INVALID_PASSWORD")
            session.commit()
            out({"user_id": user.id, "account_id": user.account_id, "email": user.email, "tokens_revoked": True})

    return users_cli
