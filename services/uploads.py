"""What every upload shares (audio, campaign and do-not-call CSVs): the file name shown to
people, the first look at a CSV, storing it within its limit, and the account's pending imports.

An upload buys work: the web reads up to ``MAX_CSV_BYTES`` and the worker parses it, so an
account holds at most ``MAX_PENDING_IMPORTS`` imports queued or running (campaigns still
IMPORTING plus do-not-call imports QUEUED or RUNNING).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from campaigns.csv_reader import SNIFF_BYTES, CsvError, sniff
from core.campaign_states import CampaignStatus
from core.models import Campaign, DncImport
from core.names import name_problem
from core.states import ImportStatus
from services.errors import Refused

COPY_CHUNK = 1024 * 1024
RETRY_AFTER_SECONDS = 30


def upload_filename(raw: str | None, field: str) -> str | None:
    """The base name of an uploaded file, for display only (files are stored by id).

    Browsers send a base name, some a full client path, which is cut to its last part. A name
    with a ``..`` component, a NUL or another control character only comes from a crafted
    request and is refused (422 ``INVALID_FILENAME``) before anything is read or written.
    """
    if not raw:
        return None
    parts = raw.replace("\\", "/").split("/")
    if ".." in parts or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        message = "The file name must not contain '..' components or control characters."
        raise Refused(422, "INVALID_FILENAME", message, {field: [message]})
    return parts[-1][:255] or None


def display_filename(raw: str | None, field: str, default: str) -> str:
    """The uploaded file's base name for display: ``upload_filename``'s checks (no ``..``, no
    control characters), then the display-name rule (no direction overrides or other invisible
    characters); 422 ``INVALID_FILENAME`` otherwise."""
    name = upload_filename(raw, field) or default
    problem = name_problem(name)
    if problem is not None:
        message = f"The file name {problem}."
        raise Refused(422, "INVALID_FILENAME", message, {field: [message]})
    return name


def checked_head(stream: IO[bytes], field: str) -> bytes:
    """The first ``SNIFF_BYTES`` of the upload, which must look like a phone list (``sniff``):
    422 with the reader's code (EMPTY_FILE, BINARY_FILE, INVALID_ENCODING, NO_PHONE_COLUMN ...)."""
    head: bytes = stream.read(SNIFF_BYTES)
    try:
        sniff(head)
    except CsvError as exc:
        raise Refused(422, exc.code, exc.message, {field: [exc.message]}) from None
    return head


def save_upload(session: Session, head: bytes, stream: IO[bytes], path: Path, limit: int, field: str) -> int:
    """Store the rest of the upload after ``head`` at ``path``; above ``limit`` bytes roll the
    session back and refuse with 413 ``CSV_TOO_LARGE``. Returns the size."""
    size = store_upload(head, stream, path, limit)
    if size > limit:
        session.rollback()
        raise Refused(413, "CSV_TOO_LARGE", f"The CSV file is larger than {limit} bytes.",
                      {field: [f"max {limit} bytes"]})
    return size


def store_upload(head: bytes, stream: IO[bytes], path: Path, limit: int) -> int:
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


def pending_imports(session: Session, account_id: str) -> int:
    """The account's imports waiting for or on the worker."""
    campaigns = session.scalar(sa.select(sa.func.count()).select_from(Campaign).where(
        Campaign.account_id == account_id, Campaign.status == CampaignStatus.IMPORTING)) or 0
    lists = session.scalar(sa.select(sa.func.count()).select_from(DncImport).where(
        DncImport.account_id == account_id, DncImport.status.in_([ImportStatus.QUEUED, ImportStatus.RUNNING]))) or 0
    session.commit()
    return int(campaigns) + int(lists)


def check_pending_imports(session: Session, account_id: str, limit: int) -> None:
    """429 ``TOO_MANY_IMPORTS`` when the account already has ``limit`` imports pending."""
    pending = pending_imports(session, account_id)
    if pending >= limit:
        raise Refused(429, "TOO_MANY_IMPORTS",
                      f"{pending} imports of this account are queued or running (at most {limit}). "
                      "Retry when one has finished.", {"pending_imports": pending, "limit": limit},
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
