"""The account's do-not-call list (checked at import and again at dial time) and its bulk
uploads, which the worker imports (``campaigns.dnc_importer``): a request never parses a file."""

from __future__ import annotations

from typing import IO, Any

import sqlalchemy as sa
from rq import Queue
from sqlalchemy.orm import Session

from campaigns.dnc_importer import dnc_upload_path, enqueue_dnc_import, insert_dnc_numbers
from core.db import utcnow
from core.models import DncImport, DncNumber
from core.settings import Settings
from core.states import ImportStatus
from services.errors import Refused, not_found
from services.tenancy import owned
from services.uploads import save_upload


def add(session: Session, account_id: str, phone: str, reason: str | None) -> tuple[DncNumber, bool]:
    """List ``phone`` (E.164); (the row, whether it was new). Commits."""
    added = insert_dnc_numbers(session, session.get_bind().dialect.name,
                               [{"account_id": account_id, "phone_number": phone, "reason": reason,
                                 "created_at": utcnow()}])
    session.commit()
    row = session.execute(sa.select(DncNumber).where(DncNumber.account_id == account_id,
                                                     DncNumber.phone_number == phone)).scalar_one()
    return row, bool(added)


def remove(session: Session, account_id: str, phone: str) -> None:
    """Take ``phone`` off the list (future calls to it are allowed again); 404 when not listed. Commits."""
    done = session.execute(sa.delete(DncNumber).where(DncNumber.account_id == account_id,
                                                      DncNumber.phone_number == phone)).rowcount
    session.commit()
    if not done:
        raise not_found("Do-not-call number")


def list_query(account_id: str, phone: str | None = None) -> sa.Select[Any]:
    """The list, newest first; one number when ``phone`` (E.164) is given."""
    query = sa.select(DncNumber).where(DncNumber.account_id == account_id)
    if phone is not None:
        query = query.where(DncNumber.phone_number == phone)
    return query.order_by(DncNumber.id.desc())


def start_import(session: Session, settings: Settings, queue: Queue, account_id: str, filename: str,
                 head: bytes, stream: IO[bytes]) -> DncImport:
    """Store a bulk upload (``head`` already checked) and enqueue its import: the import QUEUED.
    413 past ``MAX_CSV_BYTES``; 503 when the queue is unreachable. Commits."""
    row = DncImport(account_id=account_id, status=ImportStatus.QUEUED, filename=filename)
    session.add(row)
    session.flush()
    row.size_bytes = save_upload(session, head, stream, dnc_upload_path(settings, row.id), settings.max_csv_bytes,
                                 "csv_file")
    session.commit()
    try:
        enqueue_dnc_import(queue, row.id)
    except Exception:  # Redis down: nothing would import it; say so instead of leaving it queued
        row.status = ImportStatus.FAILED
        row.error_code, row.error_message = "QUEUE_UNAVAILABLE", "the import queue is unavailable; upload again"
        session.commit()
        dnc_upload_path(settings, row.id).unlink(missing_ok=True)
        raise Refused(503, "SERVICE_UNAVAILABLE", "The import queue is unavailable. Try again shortly.") from None
    return row


def own_import(session: Session, account_id: str, import_id: str) -> DncImport:
    return owned(session, DncImport, account_id, import_id, "Do-not-call import")


def imports_query(account_id: str) -> sa.Select[Any]:
    """The account's bulk uploads, newest first."""
    return (sa.select(DncImport).where(DncImport.account_id == account_id)
            .order_by(DncImport.created_at.desc(), DncImport.id))
