"""The campaign CSV import: an RQ job that turns an uploaded file into queued calls.

The API stores the upload at ``upload_path(settings, campaign_id)``, creates the campaign in
IMPORTING and enqueues ``import_campaign(campaign_id)`` (``IMPORT_JOB``) on the worker queue. The job
streams the file (constant memory), normalises every number to E.164, drops numbers on the
account's do-not-call list and duplicates within the campaign, records each invalid row with its
line number and reason, then moves the campaign to RUNNING (or SCHEDULED until ``start_at``).

Safety:

* A campaign is dialable only once it leaves IMPORTING, and it leaves IMPORTING in the job's last
  statement, so the calls can be inserted batch by batch in their own transactions.
* Any error in the file (encoding, binary content, no phone column, too many rows, too large) is
  found by a validation pass before a single call is written; the campaign becomes FAILED with
  ``import_error`` and none of its calls remain.
* Running the job twice is harmless: a campaign that is no longer IMPORTING is left alone, and an
  import that crashed half-way starts again from a clean slate (its calls and rejected rows are
  deleted first). On MariaDB a named lock keeps two workers off the same campaign.
* Duplicates are left to the unique (campaign_id, phone_number) key (INSERT IGNORE / INSERT OR
  IGNORE), and the do-not-call list is looked up per batch in SQL: memory never grows with the
  file or the list.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from campaigns.csv_reader import FILE_TOO_LARGE, CsvError, PhoneCsv
from core import outbox
from core.call_states import CallStatus
from core.campaign_states import CampaignStatus
from core.db import make_engine, utcnow
from core.models import ZERO, Call, Campaign, CampaignRejectedRow, DncNumber
from core.phone import InvalidPhoneNumber, normalize_pk
from core.settings import Settings, load_settings

log = logging.getLogger("zenscall.campaigns.import")

IMPORT_JOB = "campaigns.importer.import_campaign"
IMPORT_JOB_TIMEOUT = 3600  # seconds; RQ's default (180 s) is too short for a million rows
BATCH_ROWS = 5000
DELETE_CHUNK = 20000
CANCEL_CHECK_BATCHES = 20  # look for a cancel every this many batches
DNC_REASON = "on the do-not-call list"

UPLOAD_MISSING = "UPLOAD_MISSING"
NO_VALID_NUMBERS = "NO_VALID_NUMBERS"
IMPORT_CRASHED = "IMPORT_CRASHED"

_calls = Call.__table__
_campaigns = Campaign.__table__
_rejected = CampaignRejectedRow.__table__
_dnc = DncNumber.__table__


@dataclass(frozen=True)
class ImportLimits:
    """Upload limits, read from the settings only: ``MAX_CSV_BYTES``, ``MAX_CSV_ROWS`` and
    ``MAX_CSV_LINES`` (physical lines, blank ones included)."""

    max_bytes: int
    max_rows: int
    max_lines: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ImportLimits:
        return cls(max_bytes=settings.max_csv_bytes, max_rows=settings.max_csv_rows,
                   max_lines=settings.max_csv_lines)

    def reader(self, fileobj: Any) -> PhoneCsv:
        """A ``PhoneCsv`` over ``fileobj`` within these limits."""
        return PhoneCsv(fileobj, max_rows=self.max_rows, max_bytes=self.max_bytes, max_lines=self.max_lines)


def upload_path(settings: Settings, campaign_id: str) -> Path:
    """Where the API stores a campaign's CSV for the import job (the id must be a UUID)."""
    return settings.var_dir / "uploads" / f"{uuid.UUID(campaign_id)}.csv"


def enqueue_import(queue: Any, campaign_id: str) -> Any:
    """Enqueue the import on the worker queue with a stable job id (a second enqueue is harmless)."""
    return queue.enqueue(IMPORT_JOB, campaign_id, job_id=f"import-{campaign_id}", job_timeout=IMPORT_JOB_TIMEOUT,
                         result_ttl=86400, failure_ttl=7 * 86400, description=f"import_campaign({campaign_id})")


def recover_stalled_imports(conn: Connection, queue: Any, stall_seconds: int, *, limit: int = 100) -> list[str]:
    """Enqueue again the import of every campaign IMPORTING for more than ``stall_seconds`` whose job
    neither waits on the queue nor runs (its worker was killed, or Redis lost the job); do-not-call
    list imports queued or running as long are recovered the same way (``dnc_importer``).

    "Runs" is the import's named lock on MariaDB (held by a live connection only, so a killed worker
    holds none); on SQLite it is RQ's job status. A spare enqueue is harmless: the job takes the lock
    and starts from a clean slate, or skips a campaign that has left IMPORTING. Returns the ids."""
    from campaigns.dnc_importer import recover_stalled_dnc_imports

    cutoff = utcnow() - timedelta(seconds=stall_seconds)
    stalled = list(conn.scalars(
        sa.select(_campaigns.c.id)
        .where(_campaigns.c.status == CampaignStatus.IMPORTING, _campaigns.c.updated_at < cutoff)
        .order_by(_campaigns.c.updated_at).limit(limit)))
    conn.commit()
    requeued = []
    for campaign_id in stalled:
        status = job_lost(conn, queue, f"import-{campaign_id}", _lock_name(campaign_id))
        if status is None:
            continue
        enqueue_import(queue, campaign_id)
        log.warning("campaign import stalled (status %s); enqueued again", status,
                    extra={"event": "import_requeued", "campaign_id": campaign_id})
        requeued.append(campaign_id)
    return requeued + recover_stalled_dnc_imports(conn, queue, stall_seconds, limit=limit)


def job_lost(conn: Connection, queue: Any, job_id: str, lock_name: str) -> str | None:
    """The job's RQ status (a string, "missing" without a job) when it neither waits on ``queue`` nor
    runs; None while it does. Running is ``lock_name`` held on MariaDB, RQ's STARTED elsewhere."""
    from rq.job import JobStatus

    job = queue.fetch_job(job_id)
    status = job.get_status(refresh=False) if job is not None else None
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return None
    if is_mysql(conn):
        running = conn.scalar(sa.select(sa.func.is_used_lock(lock_name))) is not None
        conn.commit()
    else:
        running = status == JobStatus.STARTED
    if running:
        return None
    return str(getattr(status, "value", status or "missing"))


_engines: dict[str, Engine] = {}


def engine_for(settings: Settings) -> Engine:
    """The SQL engine of the import jobs of this worker process (one per database URL)."""
    engine = _engines.get(settings.database_url)
    if engine is None:
        engine = _engines[settings.database_url] = make_engine(settings.database_url, pool_size=2)
    return engine


@dataclass
class _Counts:
    total: int = 0
    accepted: int = 0
    duplicate: int = 0
    dnc: int = 0
    invalid: int = 0

    def as_columns(self) -> dict[str, int]:
        return {"rows_total": self.total, "rows_accepted": self.accepted, "rows_duplicate": self.duplicate,
                "rows_dnc": self.dnc, "rows_invalid": self.invalid}


class _Stopped(Exception):
    """The campaign left IMPORTING (cancelled) while the job ran."""


def import_campaign(campaign_id: str, *, settings: Settings | None = None, engine: Engine | None = None,
                    limits: ImportLimits | None = None) -> dict[str, Any]:
    """The RQ job (``IMPORT_JOB``): import the campaign's uploaded CSV; returns a summary."""
    settings = settings or load_settings()
    engine = engine or engine_for(settings)
    limits = limits or ImportLimits.from_settings(settings)
    started = time.monotonic()
    result = run_locked(engine, _lock_name(campaign_id), lambda conn: _run(conn, settings, campaign_id, limits))
    if result is None:
        log.info("campaign import already running elsewhere", extra={"campaign_id": campaign_id})
        return {"campaign_id": campaign_id, "skipped": "import already running"}
    result["seconds"] = round(time.monotonic() - started, 3)
    if "skipped" not in result:
        log.info("campaign import %s: %s rows, %s accepted, %s duplicate, %s do-not-call, %s invalid in %.1fs",
                 result["status"], result.get("rows_total", 0), result.get("rows_accepted", 0),
                 result.get("rows_duplicate", 0), result.get("rows_dnc", 0), result.get("rows_invalid", 0),
                 result["seconds"], extra={"campaign_id": campaign_id, **result})
    return result


def _run(conn: Connection, settings: Settings, campaign_id: str, limits: ImportLimits) -> dict[str, Any]:
    campaign = conn.execute(sa.select(_campaigns).where(_campaigns.c.id == campaign_id)).one_or_none()
    conn.commit()
    if campaign is None:
        log.warning("campaign import: no such campaign", extra={"campaign_id": campaign_id})
        return {"campaign_id": campaign_id, "skipped": "no such campaign"}
    if campaign.status != CampaignStatus.IMPORTING:
        return {"campaign_id": campaign_id, "skipped": f"campaign is {campaign.status.value}"}

    # a previous run may have crashed half-way: start from a clean slate
    _delete_campaign_rows(conn, campaign_id)

    path = upload_path(settings, campaign_id)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return _fail(conn, campaign_id, UPLOAD_MISSING, "the uploaded file is missing; upload it again")
    if size > limits.max_bytes:
        return _fail(conn, campaign_id, FILE_TOO_LARGE,
                     f"the file is {size} bytes; the limit is {limits.max_bytes} bytes")
    try:
        # validation pass: every file-level error is found before a call is written
        with path.open("rb") as f:
            for _ in limits.reader(f):
                pass
        with path.open("rb") as f:
            counts = _import_rows(conn, campaign, limits.reader(f))
    except CsvError as exc:
        return _fail(conn, campaign_id, exc.code, exc.message, exc.line)
    except _Stopped:
        return _stopped(conn, campaign_id)
    except Exception:
        # a database or disk error: say so on the campaign rather than leave it importing for ever
        log.exception("campaign import crashed", extra={"campaign_id": campaign_id})
        try:
            _fail(conn, campaign_id, IMPORT_CRASHED, "the import failed unexpectedly; upload the file again")
        except Exception:  # noqa: BLE001 - the original error is the one to report
            log.exception("could not mark the campaign failed", extra={"campaign_id": campaign_id})
        raise

    if counts.accepted == 0:
        detail = (f"no number to call: {counts.invalid} invalid, {counts.dnc} on the do-not-call list, "
                  f"{counts.duplicate} duplicate")
        return _fail(conn, campaign_id, NO_VALID_NUMBERS, detail, keep_rows=True, counts=counts)

    now = utcnow()
    start_at: datetime | None = campaign.start_at
    status = CampaignStatus.SCHEDULED if start_at is not None and start_at > now else CampaignStatus.RUNNING
    done = conn.execute(
        sa.update(_campaigns)
        .where(_campaigns.c.id == campaign_id, _campaigns.c.status == CampaignStatus.IMPORTING)
        .values(status=status, import_error=None, imported_at=now, updated_at=now,
                started_at=now if status == CampaignStatus.RUNNING else None, **counts.as_columns())
    ).rowcount
    if done == 1:
        outbox.campaign_events(conn, [campaign_id], "campaign.import_completed", now, {"status": status.value})
        if status is CampaignStatus.RUNNING:  # one microsecond later: its own, later sequence
            outbox.campaign_events(conn, [campaign_id], "campaign.started", now + timedelta(microseconds=1))
    conn.commit()
    if done != 1:
        return _stopped(conn, campaign_id)
    # the numbers live in SQL now; the upload would only fill the disk
    path.unlink(missing_ok=True)
    return {"campaign_id": campaign_id, "status": status.value, **counts.as_columns()}


def _import_rows(conn: Connection, campaign: Any, reader: PhoneCsv) -> _Counts:
    counts = _Counts()
    now = utcnow()
    next_attempt_at = max(now, campaign.start_at) if campaign.start_at is not None else now
    constants = {
        "account_id": campaign.account_id,
        "campaign_id": campaign.id,
        "audio_id": campaign.audio_id,
        "caller_id": campaign.caller_id,
        "status": CallStatus.QUEUED,
        "max_retries": campaign.max_retries,
        "retry_delay_seconds": campaign.retry_delay_seconds,
        "attempts_count": 0,
        "next_attempt_at": next_attempt_at,
        "billsec": 0,
        "cost": ZERO,
        "created_at": now,
        "updated_at": now,
    }
    has_dnc = conn.execute(sa.select(_dnc.c.id).where(_dnc.c.account_id == campaign.account_id).limit(1)).first()
    dnc_query = sa.select(_dnc.c.phone_number).where(
        _dnc.c.account_id == campaign.account_id, _dnc.c.phone_number.in_(sa.bindparam("numbers", expanding=True)))
    conn.commit()

    with _Writer(conn.engine, constants, threaded=is_mysql(conn)) as writer:
        for batch_no, batch in enumerate(_batches(reader, BATCH_ROWS), start=1):
            rejected: list[dict[str, Any]] = []
            valid: list[tuple[int, str]] = []
            for line_no, raw in batch:
                try:
                    valid.append((line_no, normalize_pk(raw)))
                except InvalidPhoneNumber as exc:
                    rejected.append({"campaign_id": campaign.id, "line_no": line_no, "raw_value": raw[:100],
                                     "reason": exc.reason[:100]})
            counts.total += len(batch)
            counts.invalid += len(rejected)

            blocked: set[str] = set()
            if has_dnc is not None and valid:
                blocked = set(conn.scalars(dnc_query, {"numbers": list({number for _, number in valid})}))
                conn.commit()
            numbers: dict[str, None] = {}
            for line_no, number in valid:
                if number in blocked:
                    counts.dnc += 1
                    rejected.append({"campaign_id": campaign.id, "line_no": line_no, "raw_value": number,
                                     "reason": DNC_REASON})
                elif number in numbers:
                    counts.duplicate += 1
                else:
                    numbers[number] = None
            writer.put(list(numbers), rejected)
            if batch_no % CANCEL_CHECK_BATCHES == 0:
                status = conn.scalar(sa.select(_campaigns.c.status).where(_campaigns.c.id == campaign.id))
                conn.commit()
                if status != CampaignStatus.IMPORTING:
                    raise _Stopped
    counts.accepted = writer.inserted
    counts.duplicate += writer.attempted - writer.inserted
    return counts


def is_mysql(conn: Connection) -> bool:
    return conn.dialect.name in ("mysql", "mariadb")


_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)


class _Writer:
    """Writes the batches: on MariaDB in its own thread and connection, so the database works on one
    batch while the next is parsed and normalised.

    On MariaDB a batch of calls is one multi-row ``INSERT IGNORE``: the per-row part is only the id and
    the number (both generated here and checked against a strict pattern), and the campaign's
    constants are bound once per statement through the columns' own types (Money, UTCDateTime).
    Elsewhere (SQLite) it is a Core ``INSERT OR IGNORE`` executemany in the caller's thread.
    """

    def __init__(self, engine: Engine, constants: dict[str, Any], *, threaded: bool) -> None:
        self._engine = engine
        self._constants = constants
        self._threaded = threaded
        self._queue: queue.Queue[tuple[list[str], list[dict[str, Any]]] | None] = queue.Queue(maxsize=2)
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None
        self._error: BaseException | None = None
        self.attempted = 0
        self.inserted = 0

    def __enter__(self) -> _Writer:
        self._conn = self._engine.connect()
        if self._threaded:
            self._thread = threading.Thread(target=self._run, name="campaign-import-writer", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._thread is not None:
                if exc is not None:
                    self._drain()
                self._queue.put(None)
                self._thread.join()
        finally:
            assert self._conn is not None
            self._conn.close()
        if exc is None and self._error is not None:
            raise self._error

    def put(self, numbers: list[str], rejected: list[dict[str, Any]]) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._write(numbers, rejected)
        else:
            self._queue.put((numbers, rejected))

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc

    def _write(self, numbers: list[str], rejected: list[dict[str, Any]]) -> None:
        conn = self._conn
        assert conn is not None
        if numbers:
            self.attempted += len(numbers)
            if is_mysql(conn):
                self.inserted += self._insert_mysql(conn, numbers)
            else:
                ids = _time_ordered_ids(len(numbers))
                rows = [{**self._constants, "id": i, "phone_number": n} for i, n in zip(ids, numbers, strict=True)]
                self.inserted += conn.execute(_insert_calls, rows).rowcount
        if rejected:
            conn.execute(sa.insert(_rejected), rejected)
        conn.commit()

    def _insert_mysql(self, conn: Connection, numbers: list[str]) -> int:
        names = list(self._constants)
        params = {}
        for name in names:
            processor = _calls.c[name].type.bind_processor(conn.dialect)
            value = self._constants[name]
            params[name] = processor(value) if processor is not None else value
        tail = ",".join(f"%({name})s" for name in names)
        ids = _time_ordered_ids(len(numbers))
        for number in numbers:
            if _E164.fullmatch(number) is None:  # never true for normalize_pk's output; keeps the SQL safe
                raise ValueError(f"not an E.164 number: {number!r}")
        values = ",".join([f"('{i}','{n}',{tail})" for i, n in zip(ids, numbers, strict=True)])
        sql = f"INSERT IGNORE INTO calls (id,phone_number,{','.join(names)}) VALUES {values}"
        return int(conn.exec_driver_sql(sql, params).rowcount)


_insert_calls = (sa.insert(_calls).prefix_with("IGNORE", dialect="mysql")
                 .prefix_with("IGNORE", dialect="mariadb").prefix_with("OR IGNORE", dialect="sqlite"))


_last_ms = 0


def _time_ordered_ids(n: int) -> list[str]:
    """``n`` ascending UUIDs (version 7 layout: 48-bit millisecond time, then random bits).

    Calls are keyed by a 36-character string; random (version 4) keys scatter a million inserts all
    over the clustered index, which is what makes a big import slow once the table outgrows the
    buffer pool. Time-ordered keys append at the end of it. Each batch gets a millisecond of its
    own and its ids are sorted, so ids follow the file's order and the dispatcher, which orders
    by (next_attempt_at, id), dials a campaign in the order of its CSV.
    """
    global _last_ms
    ms = max(time.time_ns() // 1_000_000, _last_ms + 1)
    _last_ms = ms
    rand = os.urandom(10 * n)
    prefix = f"{ms:012x}"
    head = f"{prefix[:8]}-{prefix[8:]}-7"
    out = []
    from_bytes = int.from_bytes
    for k in range(0, 10 * n, 10):
        r = from_bytes(rand[k:k + 10], "big")  # 80 random bits: 12 + 62 used
        a = (r >> 62) & 0xFFF
        b = (r & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        hb = f"{b:016x}"
        out.append(f"{head}{a:03x}-{hb[:4]}-{hb[4:]}")
    out.sort()
    return out


def _batches(reader: PhoneCsv, size: int) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    for item in reader:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fail(conn: Connection, campaign_id: str, code: str, message: str, line: int | None = None, *,
          keep_rows: bool = False, counts: _Counts | None = None) -> dict[str, Any]:
    """FAILED with ``import_error``; no call of the campaign remains (rejected rows are kept on request)."""
    conn.rollback()
    _delete_calls(conn, campaign_id)
    if not keep_rows:
        _delete_rejected(conn, campaign_id)
    error = f"{code}: {message}" + (f" (line {line})" if line is not None else "")
    now = utcnow()
    summary = (counts or _Counts()).as_columns()
    failed = conn.execute(
        sa.update(_campaigns)
        .where(_campaigns.c.id == campaign_id, _campaigns.c.status == CampaignStatus.IMPORTING)
        .values(status=CampaignStatus.FAILED, import_error=error[:500], imported_at=now, updated_at=now, **summary)
    ).rowcount
    if failed == 1:
        outbox.campaign_events(conn, [campaign_id], "campaign.import_failed", now, {"import_error": error[:500]})
    conn.commit()
    return {"campaign_id": campaign_id, "status": CampaignStatus.FAILED.value, "error_code": code,
            "import_error": error, "line": line, **summary}


def _stopped(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The campaign was cancelled (or otherwise moved on) during the import: nothing of it may dial."""
    conn.rollback()
    _delete_calls(conn, campaign_id)
    status = conn.scalar(sa.select(_campaigns.c.status).where(_campaigns.c.id == campaign_id))
    conn.commit()
    return {"campaign_id": campaign_id, "skipped": f"campaign became {getattr(status, 'value', status)} during import"}


def _delete_campaign_rows(conn: Connection, campaign_id: str) -> None:
    _delete_calls(conn, campaign_id)
    _delete_rejected(conn, campaign_id)


def _delete_calls(conn: Connection, campaign_id: str) -> None:
    # only calls never attempted: a campaign that got this far has none, and a guard costs nothing
    _delete_chunked(conn, _calls, (_calls.c.campaign_id == campaign_id) & (_calls.c.attempts_count == 0))


def _delete_rejected(conn: Connection, campaign_id: str) -> None:
    _delete_chunked(conn, _rejected, _rejected.c.campaign_id == campaign_id)


def _delete_chunked(conn: Connection, table: sa.Table, condition: sa.ColumnElement[bool]) -> None:
    """Delete in chunks on MariaDB so a million rows do not make one huge transaction."""
    chunked = conn.dialect.name in ("mysql", "mariadb")
    while True:
        stmt = sa.delete(table).where(condition)
        if chunked:
            stmt = stmt.with_dialect_options(mysql_limit=DELETE_CHUNK)
        deleted = conn.execute(stmt).rowcount
        conn.commit()
        if not chunked or deleted < DELETE_CHUNK:
            return


def run_locked(engine: Engine, lock_name: str, run: Callable[[Connection], dict[str, Any]]) -> dict[str, Any] | None:
    """``run(conn)`` under the named import lock; None when another worker holds it."""
    with engine.connect() as conn:
        lock = ImportLock(conn, lock_name)
        if not lock.acquire():
            return None
        try:
            return run(conn)
        finally:
            lock.release()


def _lock_name(campaign_id: str) -> str:
    return f"zc_import_{campaign_id}"


class ImportLock:
    """A MariaDB named lock per import (released with the connection if the worker dies)."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._held = False
        self._enabled = conn.dialect.name in ("mysql", "mariadb")

    def acquire(self) -> bool:
        if not self._enabled:
            return True  # SQLite: the embedded stack runs one worker
        self._held = self._conn.scalar(sa.select(sa.func.get_lock(self._name, 0))) == 1
        self._conn.commit()
        return self._held

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            self._conn.rollback()
            self._conn.scalar(sa.select(sa.func.release_lock(self._name)))
            self._conn.commit()
        except Exception:  # noqa: BLE001 - a dead connection has released the lock already
            log.warning("could not release the import lock %s", self._name, exc_info=True)
