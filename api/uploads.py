"""What the CSV upload endpoints (campaigns, do-not-call lists) share.

An upload buys work: the web reads up to ``MAX_CSV_BYTES`` and the worker parses it. Besides the
per-key creation limit (``RATELIMIT_CREATE``), which an account could multiply by making keys,
``upload_guard`` holds two limits per account, both checked before the request body is read:

* ``RATELIMIT_UPLOAD`` (10 per minute): uploads of the account, whatever key sends them
  (429 ``RATE_LIMITED``);
* ``MAX_PENDING_IMPORTS`` (3): imports queued or running, campaigns still IMPORTING plus
  do-not-call imports QUEUED or RUNNING (429 ``TOO_MANY_IMPORTS``).

A refused upload's body is then never read (``api.request_body``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.auth import current
from api.context import db, services
from api.errors import ApiError
from api.limits import hit
from api.resources.audio import upload_filename
from campaigns.csv_reader import SNIFF_BYTES, CsvError, sniff
from core.campaign_states import CampaignStatus
from core.models import Campaign, DncImport
from core.names import name_problem
from core.states import ImportStatus

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("zenscall.uploads")

COPY_CHUNK = 1024 * 1024
RETRY_AFTER_SECONDS = 30


def display_filename(upload: Any, field: str, default: str) -> str:
    """The uploaded file's base name for display: ``upload_filename``'s checks (no ``..``, no
    control characters), then the display-name rule (no direction overrides or other invisible
    characters); 422 ``INVALID_FILENAME`` otherwise."""
    name = upload_filename(upload.filename, field) or default
    problem = name_problem(name)
    if problem is not None:
        message = f"The file name {problem}."
        raise ApiError(422, "INVALID_FILENAME", message, {field: [message]})
    return name


def checked_head(upload: Any, field: str) -> bytes:
    """The first ``SNIFF_BYTES`` of the upload, which must look like a phone list (``sniff``):
    422 with the reader's code (EMPTY_FILE, BINARY_FILE, INVALID_ENCODING, NO_PHONE_COLUMN ...)."""
    head: bytes = upload.stream.read(SNIFF_BYTES)
    try:
        sniff(head)
    except CsvError as exc:
        raise ApiError(422, exc.code, exc.message, {field: [exc.message]}) from None
    return head


def save_upload(session: Session, head: bytes, upload: Any, path: Path, limit: int, field: str) -> int:
    """Store the rest of the upload after ``head`` at ``path``; above ``limit`` bytes roll the
    session back and answer 413 ``CSV_TOO_LARGE``. Returns the size."""
    size = store_upload(head, upload.stream, path, limit)
    if size > limit:
        session.rollback()
        raise ApiError(413, "CSV_TOO_LARGE", f"The CSV file is larger than {limit} bytes.",
                       {field: [f"max {limit} bytes"]})
    return size


def store_upload(head: bytes, stream: BinaryIO, path: Path, limit: int) -> int:
    """Copy the upload to ``path`` (atomically, through ``.part``), stopping as soon as it passes
    ``limit`` bytes; then nothing is left on disk. Returns the size seen (``> limit``: too large)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    size = len(head)
    with open(tmp, "wb") as out:
        out.write(head)
        while size <= limit:
            chunk = stream.read(COPY_CHUNK)
            if not chunk:
                break
            out.write(chunk)
            size += len(chunk)
            time.sleep(0)  # under gevent: let the worker's other requests run between chunks
    if size > limit:
        tmp.unlink(missing_ok=True)
        return size
    tmp.replace(path)
    return size


def pending_imports(account_id: str) -> int:
    """The account's imports waiting for or on the worker."""
    session = db()
    campaigns = session.scalar(sa.select(sa.func.count()).select_from(Campaign).where(
        Campaign.account_id == account_id, Campaign.status == CampaignStatus.IMPORTING)) or 0
    lists = session.scalar(sa.select(sa.func.count()).select_from(DncImport).where(
        DncImport.account_id == account_id, DncImport.status.in_([ImportStatus.QUEUED, ImportStatus.RUNNING]))) or 0
    session.commit()
    return int(campaigns) + int(lists)


def _account_upload_limit(account_id: str) -> None:
    """429 ``RATE_LIMITED`` past ``RATELIMIT_UPLOAD`` uploads of the account (moving window, in
    the rate limits' storage; counted in memory while Redis is unreachable)."""
    full = hit(services().settings.ratelimit_upload, "upload-account", f"account:{account_id}")
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
        limit = services().settings.max_pending_imports
        pending = pending_imports(account_id)
        if pending >= limit:
            raise ApiError(429, "TOO_MANY_IMPORTS",
                           f"{pending} imports of this account are queued or running (at most {limit}). "
                           "Retry when one has finished.", {"pending_imports": pending, "limit": limit},
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        _account_upload_limit(account_id)
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
