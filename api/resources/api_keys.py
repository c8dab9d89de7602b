"""/api-keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import not_found
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import ApiKeySchema, DisplayName, NewApiKeySchema
from core.db import utcnow
from core.models import ApiKey
from services.accounts import create_api_key

blp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys", description="API keys")


class NewKeyArgs(ma.Schema):
    name = DisplayName(load_default="API key", max_length=100)


def _own_key(key_id: str) -> ApiKey:
    row = db().get(ApiKey, key_id)
    if row is None or row.account_id != current().account_id:
        raise not_found("API key")
    return row


@blp.route("", methods=["POST"])
@require_auth
@blp.arguments(NewKeyArgs)
@blp.response(201, NewApiKeySchema)
def create(body: dict[str, Any]) -> ApiKey:
    """Create an API key. The full key is in this response only: store it safely."""
    session = db()
    row, key = create_api_key(session, current().account_id, body["name"])
    session.commit()
    row.key = key  # type: ignore[attr-defined]  # not a column: only this response carries it
    return row


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(ApiKeySchema, "ApiKeyPage"))
def list_keys(args: dict[str, Any]) -> dict[str, Any]:
    """List the account's API keys (never the keys themselves)."""
    query = sa.select(ApiKey).where(ApiKey.account_id == current().account_id).order_by(
        ApiKey.created_at.desc(), ApiKey.id)
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:key_id>", methods=["GET"])
@require_auth
@blp.response(200, ApiKeySchema)
def get_key(key_id: str) -> ApiKey:
    """One API key's metadata."""
    return _own_key(key_id)


@blp.route("/<string:key_id>", methods=["DELETE"])
@require_auth
@blp.response(204)
def revoke(key_id: str) -> None:
    """Revoke a key: requests with it answer 401 from now on (API_KEY_REVOKED)."""
    row = _own_key(key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db().commit()
    # this process forgets it at once; the other web processes within API_KEY_CACHE_SECONDS
    services().api_keys.forget_key(row.id)
