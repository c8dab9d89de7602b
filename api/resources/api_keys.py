"""/api-keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import ApiKeySchema, DisplayName, NewApiKeySchema
from core.models import ApiKey
from services.accounts import create_api_key, keys_query, own_key, revoke_key

blp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys", description="API keys")


class NewKeyArgs(ma.Schema):
    name = DisplayName(load_default="API key", max_length=100)


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
    items, meta = paginate(db(), keys_query(current().account_id), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:key_id>", methods=["GET"])
@require_auth
@blp.response(200, ApiKeySchema)
def get_key(key_id: str) -> ApiKey:
    """One API key's metadata."""
    return own_key(db(), current().account_id, key_id)


@blp.route("/<string:key_id>", methods=["DELETE"])
@require_auth
@blp.response(204)
def revoke(key_id: str) -> None:
    """Revoke a key: requests with it answer 401 from now on (API_KEY_REVOKED)."""
    row = revoke_key(db(), current().account_id, key_id)
    # this process forgets it at once; the other web processes within API_KEY_CACHE_SECONDS
    services().api_keys.forget_key(row.id)
