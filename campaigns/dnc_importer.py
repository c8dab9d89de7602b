"""The do-not-call list import: an RQ job that adds the numbers of an uploaded CSV to the account's
do-not-call list.

``POST /dnc/bulk`` checks the head of the file, stores the upload at ``dnc_upload_path``, creates a
``DncImport`` row (QUEUED) and enqueues ``import_dnc_list(import_id)`` (``DNC_IMPORT_JOB``) on the
worker queue; ``GET /dnc/imports/{id}`` shows its progress and, at the end, its summary. Parsing a
large file takes seconds of CPU, which must never happen inside a web worker.

* The file is read twice within ``ImportLimits`` (bytes, physical lines, rows): a validation pass
  finds every file-level error before a number is added, so a refused file adds nothing.
* Numbers go in batches of ``BATCH_ROWS``, each its own ``INSERT IGNORE`` (a number already listed
  is skipped), with the progress written after each batch.
* Running the job twice is harmless: a finished import is left alone, and one interrupted half-way
  starts again (numbers it added before count as already listed the second time). On MariaDB a
  named lock keeps two workers off the same import. ``campaigns.importer.recover_stalled_imports``
  (the dialer's sweep) enqueues again an import whose job was lost.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from campaigns.csv_reader import CsvError
from campaigns.importer import ImportLimits, engine_for, job_lost, run_locked
from core.db import utcnow
from core.models import DncImport, DncNumber
from core.phone import InvalidPhoneNumber, normalize_pk
from core.settings import Settings, load_settings
from core.states import ImportStatus

log = logging.getLogger("zenscall.campaigns.dnc_import")

DNC_IMPORT_JOB = "campaigns.dnc_importer.import_dnc_list"
JOB_TIMEOUT = 3600
BATCH_ROWS = 2000
PROGRESS_EVERY_BATCHES = 5
MAX_REPORTED_INVALID = 100
REASON = "bulk upload"
UPLOAD_MISSING = "UPLOAD_MISSING"
IMPORT_CRASHED = "IMPORT_CRASHED"
UNFINISHED = (ImportStatus.QUEUED, ImportStatus.RUNNING)

_imports = DncImport.__table__
_dnc = DncNumber.__table__


def dnc_upload_path(settings: Settings, import_id: str) -> Path:
    """Where the API stores a do-not-call upload for the job (the id must be a UUID)."""
    return settings.var_dir / "uploads" / f"dnc-{uuid.UUID(import_id)}.csv"


def job_id(import_id: str) -> str:
    return f"dnc-import-{import_id}"


def enqueue_dnc_import(queue: Any, import_id: str) -> Any:
    """Enqueue the import on the worker queue with a stable job id (a second enqueue is harmless)."""
    return queue.enqueue(DNC_IMPORT_JOB, import_id, job_id=job_id(import_id), job_timeout=JOB_TIMEOUT,
                         result_ttl=86400, failure_ttl=7 * 86400, description=f"import_dnc_list({import_id})")


def insert_dnc_numbers(executor: Any, dialect: str, rows: list[dict[str, Any]]) -> int:
    """Add do-not-call rows with one statement; numbers already listed are skipped. ``executor`` is a
    Connection or a Session. Returns how many were added."""
    if not rows:
        return 0
    stmt: Any
    if dialect == "sqlite":
        stmt = sqlite.insert(_dnc).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(_dnc).prefix_with("IGNORE")
    else:
        stmt = sa.insert(_dnc)
    return int(executor.execute(stmt, rows).rowcount or 0)


def import_dnc_list(import_id: str, *, settings: Settings | None = None, engine: Engine | None = None,
                    limits: ImportLimits | None = None) -> dict[str, Any]:
    """The RQ job (``DNC_IMPORT_JOB``): import the upload of ``import_id``; returns its summary."""
    settings = settings or load_settings()
    engine = engine or engine_for(settings)
    limits = limits or ImportLimits.from_settings(settings)
    started = time.monotonic()
    result = run_locked(engine, _lock_name(import_id), lambda conn: _run(conn, settings, import_id, limits))
    if result is None:
        return {"import_id": import_id, "skipped": "import already running"}
    result["seconds"] = round(time.monotonic() - started, 3)
    if "skipped" not in result:
        log.info("do-not-call import %s: %s rows, %s added, %s invalid in %.1fs", result["status"],
                 result["rows"], result["added"], result["invalid"], result["seconds"],
                 extra={"import_id": import_id, "event": "dnc_import"})
    return result


def recover_stalled_dnc_imports(conn: Connection, queue: Any, stall_seconds: int, *, limit: int = 100) -> list[str]:
    """Enqueue again every import QUEUED or RUNNING without progress for ``stall_seconds`` whose job
    neither waits nor runs (see ``campaigns.importer.recover_stalled_imports``). Returns the ids."""
    cutoff = utcnow() - timedelta(seconds=stall_seconds)
    stalled = list(conn.scalars(
        sa.select(_imports.c.id).where(_imports.c.status.in_(UNFINISHED), _imports.c.updated_at < cutoff)
        .order_by(_imports.c.updated_at).limit(limit)))
    conn.commit()
    requeued = []
    for import_id in stalled:
        status = job_lost(conn, queue, job_id(import_id), _lock_name(import_id))
        if status is None:
            continue
        enqueue_dnc_import(queue, import_id)
        log.warning("do-not-call import stalled (job %s); enqueued again", status,
                    extra={"event": "import_requeued", "import_id": import_id})
        requeued.append(import_id)
    return requeued


def _lock_name(import_id: str) -> str:
    return f"zc_dnc_import_{import_id}"


def _run(conn: Connection, settings: Settings, import_id: str, limits: ImportLimits) -> dict[str, Any]:
    row = conn.execute(sa.select(_imports).where(_imports.c.id == import_id)).one_or_none()
    conn.commit()
    if row is None:
        return {"import_id": import_id, "skipped": "unknown import"}
    if row.status not in UNFINISHED:
        return {"import_id": import_id, "skipped": f"import is {getattr(row.status, 'value', row.status)}"}
    now = utcnow()
    _update(conn, import_id, status=ImportStatus.RUNNING, started_at=now, progress_percent=0, rows_total=0,
            rows_added=0, rows_invalid=0)
    path = dnc_upload_path(settings, import_id)
    try:
        size = max(path.stat().st_size, 1)
        with path.open("rb") as f:  # validation pass: a refused file adds nothing
            for n, _ in enumerate(limits.reader(f), start=1):
                if n % (BATCH_ROWS * PROGRESS_EVERY_BATCHES) == 0:
                    _update(conn, import_id, progress_percent=_percent(f.tell(), size, 0, 30))
        with path.open("rb") as f:
            summary = _add_numbers(conn, row.account_id, import_id, limits, f, size)
    except FileNotFoundError:
        return _fail(conn, import_id, UPLOAD_MISSING, "the uploaded file is missing; upload it again", None, path)
    except CsvError as exc:
        return _fail(conn, import_id, exc.code, exc.message, exc.line, path)
    except Exception:
        log.exception("do-not-call import crashed", extra={"import_id": import_id})
        try:
            _fail(conn, import_id, IMPORT_CRASHED, "the import failed unexpectedly; upload the file again", None,
                  path)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.exception("could not mark the import failed", extra={"import_id": import_id})
        raise
    _update(conn, import_id, status=ImportStatus.COMPLETED, progress_percent=100, finished_at=utcnow(),
            rows_total=summary["rows"], rows_added=summary["added"], rows_invalid=summary["invalid"],
            invalid_rows=json.dumps(summary.pop("invalid_rows")))
    path.unlink(missing_ok=True)  # the numbers live in SQL now
    return {"import_id": import_id, "status": ImportStatus.COMPLETED.value, **summary}


def _add_numbers(conn: Connection, account_id: str, import_id: str, limits: ImportLimits, f: Any,
                 size: int) -> dict[str, Any]:
    now = utcnow()
    dialect = conn.dialect.name
    rows = added = invalid = 0
    invalid_rows: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    batches = 0
    for line_no, raw in limits.reader(f):
        rows += 1
        try:
            batch.append({"account_id": account_id, "phone_number": normalize_pk(raw), "reason": REASON,
                          "created_at": now})
        except InvalidPhoneNumber as exc:
            invalid += 1
            if len(invalid_rows) < MAX_REPORTED_INVALID:
                invalid_rows.append({"line": line_no, "value": raw[:100], "reason": exc.reason})
        if len(batch) >= BATCH_ROWS:
            added += insert_dnc_numbers(conn, dialect, batch)
            conn.commit()
            batch.clear()
            batches += 1
            if batches % PROGRESS_EVERY_BATCHES == 0:
                _update(conn, import_id, progress_percent=_percent(f.tell(), size, 30, 99), rows_total=rows,
                        rows_added=added, rows_invalid=invalid)
    added += insert_dnc_numbers(conn, dialect, batch)
    conn.commit()
    return {"rows": rows, "added": added, "already_listed": rows - invalid - added, "invalid": invalid,
            "invalid_rows": invalid_rows}


def _percent(position: int, size: int, low: int, high: int) -> int:
    return low + min(high - low, (high - low) * position // size)


def _update(conn: Connection, import_id: str, **values: Any) -> None:
    conn.execute(sa.update(_imports).where(_imports.c.id == import_id).values(updated_at=utcnow(), **values))
    conn.commit()


def _fail(conn: Connection, import_id: str, code: str, message: str, line: int | None,
          path: Path) -> dict[str, Any]:
    conn.rollback()
    _update(conn, import_id, status=ImportStatus.FAILED, error_code=code, error_message=message[:500],
            error_line=line, finished_at=utcnow())
    path.unlink(missing_ok=True)
    return {"import_id": import_id, "status": ImportStatus.FAILED.value, "error_code": code, "error": message,
            "line": line, "rows": 0, "added": 0, "invalid": 0}
