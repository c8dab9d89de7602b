"""The per-account limits of the CSV upload endpoints (campaigns, do-not-call lists), checked
before the request body is read.

Besides the per-key creation limit (``RATELIMIT_CREATE``), which an account could multiply by
making keys, ``upload_guard`` holds two limits per account:

* ``RATELIMIT_UPLOAD`` (10 per minute): uploads of the account, whatever key sends them
  (429 ``RATE_LIMITED``);
* ``MAX_PENDING_IMPORTS`` (3): imports queued or running (``services.uploads``; 429
  ``TOO_MANY_IMPORTS``).

A refused upload's body is then never read (``api.request_body``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from api.auth import current
from api.context import db, services
from api.errors import ApiError
from api.limits import hit
from core.rate_limits import UPLOAD_ACCOUNT
from services.uploads import check_pending_imports

F = TypeVar("F", bound=Callable[..., Any])


def _account_upload_limit(account_id: str) -> None:
    """429 ``RATE_LIMITED`` past ``RATELIMIT_UPLOAD`` uploads of the account (moving window, in
    the rate limits' storage; counted in memory while Redis is unreachable)."""
    full = hit(services().settings.ratelimit_upload, UPLOAD_ACCOUNT, f"account:{account_id}")
    if full is not None:
        retry = max(1, full.reset_at - int(time.time()))
        raise ApiError(429, "RATE_LIMITED", f"Rate limit exceeded ({full.item}) for CSV uploads of this account. "
                       "Retry after the time in Retry-After.", {"limit": str(full.item)},
                       headers={"Retry-After": str(retry)})


def upload_guard(view: F) -> F:
    """The account's upload limits (``RATELIMIT_UPLOAD``, ``MAX_PENDING_IMPORTS``): 429 before the
    body is read. Put it above ``blp.arguments``, which parses the upload."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        account_id = current().account_id
        check_pending_imports(db(), account_id, services().settings.max_pending_imports)
        _account_upload_limit(account_id)
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
