"""``flask --app wsgi keys create|revoke``: API keys."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import fail, get_or_fail, out, services
from core.db import utcnow
from core.models import Account, ApiKey
from services.accounts import AccountError, create_api_key


def group(app: Flask) -> AppGroup:
    keys_cli = AppGroup("keys", help="API keys.")

    @keys_cli.command("create")
    @click.argument("account_id")
    @click.option("--name", default="API key")
    def keys_create(account_id: str, name: str) -> None:
        """Create an API key for an account (printed once)."""
        with services(app).sessions() as session:
            get_or_fail(session, Account, account_id, "account")
            try:
                row, key = create_api_key(session, account_id, name)
            except AccountError as exc:
                fail(str(exc), "VALIDATION_ERROR")
            session.commit()
            out({"api_key_id": row.id, "api_key": key, "prefix": row.prefix, "account_id": account_id})

    @keys_cli.command("revoke")
    @click.argument("key_id")
    def keys_revoke(key_id: str) -> None:
        """Revoke an API key: requests with it answer 401 (API_KEY_REVOKED) from now on (web
        processes that verified it a moment ago: within API_KEY_CACHE_SECONDS)."""
        with services(app).sessions() as session:
            row = get_or_fail(session, ApiKey, key_id, "API key")
            already = row.revoked_at is not None
            if not already:
                row.revoked_at = utcnow()
                session.commit()
            services(app).api_keys.forget_key(row.id)
            out({"api_key_id": row.id, "account_id": row.account_id, "prefix": row.prefix,
                 "revoked_at": row.revoked_at, "already_revoked": already})

    return keys_cli
