"""The worker's half of an upload: converting what a web request may not spend CPU on.

The API converts an upload in the request when it fits the request's budget
(``AUDIO_INLINE_CPU_MS``) and answers 201 with a READY audio. Otherwise it stores the upload as a
pending file (``pending_uploads``), creates the audio PROCESSING and enqueues ``convert_audio``
(``CONVERT_JOB``) on the worker queue; the API answers 202. The job converts under the full limits
and moves the audio to READY (the WAV written first) or to FAILED with the error in the API's
shape. Safety:

* every write is conditional on ``status = 'PROCESSING'``: a second run, or an audio deleted
  meanwhile, changes nothing (a WAV written for a deleted audio is removed again);
* the pending file is removed only once the audio has left PROCESSING, so a run that died half-way
  can be run again;
* a job that dies without an answer (the work-horse killed, a decoder crash, the job timeout) ends
  in ``conversion_crashed``, RQ's failure callback, which marks the audio FAILED
  (``CONVERSION_FAILED``): a client never polls forever;
* a job lost with no callback at all (the whole worker killed, Redis flushed) is found by
  ``recover_stalled_conversions`` on the worker's maintenance tick: an audio PROCESSING for longer
  than a job may run is enqueued again, and one still PROCESSING after ``GIVE_UP_AFTER`` times that
  is FAILED (``CONVERSION_FAILED``) rather than enqueued for ever.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

import sqlalchemy as sa
from rq import Callback
from sqlalchemy.engine import Engine

from core.audio.convert import convert_upload
from core.audio.errors import AudioError
from core.audio.store import AudioStore, PendingUploads
from core.db import make_engine, utcnow
from core.models import AudioFile
from core.settings import Settings, load_settings
from core.states import AudioStatus

log = logging.getLogger("zenscall.audio")

CONVERT_JOB = "core.audio.job.convert_audio"
JOB_TIMEOUT = 300  # seconds; the decoded-work cap keeps a conversion to a few seconds of CPU
CRASHED = "CONVERSION_FAILED"
UPLOAD_MISSING = "UPLOAD_MISSING"
STALL_SECONDS = JOB_TIMEOUT + 60  # PROCESSING longer than a job may run: its job was lost
GIVE_UP_AFTER = 3  # times STALL_SECONDS: then FAILED instead of another try

_audio = AudioFile.__table__


def pending_uploads(settings: Settings) -> PendingUploads:
    """Uploads waiting for the worker, in ``AUDIO_DIR/.pending``: the worker writes the converted
    files into ``AUDIO_DIR``, so every deployment shares that directory between web and worker."""
    return PendingUploads(settings.audio_dir / ".pending")


def job_id(audio_id: str) -> str:
    return f"audio-{audio_id}"


def enqueue_conversion(queue: Any, audio_id: str) -> Any:
    """Enqueue the conversion with a stable job id (a second enqueue is harmless)."""
    return queue.enqueue(CONVERT_JOB, audio_id, job_id=job_id(audio_id), job_timeout=JOB_TIMEOUT,
                         result_ttl=86400, failure_ttl=7 * 86400, on_failure=Callback(conversion_crashed),
                         description=f"convert_audio({audio_id})")


_engines: dict[str, Engine] = {}


def _engine(settings: Settings) -> Engine:
    engine = _engines.get(settings.database_url)
    if engine is None:
        engine = _engines[settings.database_url] = make_engine(settings.database_url, pool_size=2)
    return engine


def convert_audio(audio_id: str, *, settings: Settings | None = None, engine: Engine | None = None) -> dict[str, Any]:
    """The RQ job (``CONVERT_JOB``): convert a PROCESSING audio's pending upload; returns a summary."""
    settings = settings or load_settings()
    engine = engine or _engine(settings)
    pending = pending_uploads(settings)
    with engine.connect() as conn:
        status = conn.scalar(sa.select(_audio.c.status).where(_audio.c.id == audio_id))
    if status != AudioStatus.PROCESSING:
        pending.delete(audio_id)
        return {"audio_id": audio_id, "skipped": getattr(status, "value", status)}
    data = pending.read(audio_id)
    if data is None:
        _fail(engine, audio_id, UPLOAD_MISSING, "The upload was lost before it could be converted; upload it again.",
              {})
        return {"audio_id": audio_id, "status": AudioStatus.FAILED.value, "error": UPLOAD_MISSING}
    try:
        converted = convert_upload(data, max_bytes=settings.max_audio_bytes, max_seconds=settings.max_audio_seconds,
                                   max_samples=settings.max_audio_samples)
    except AudioError as exc:
        _fail(engine, audio_id, exc.code, exc.message, exc.api_details())
        pending.delete(audio_id)
        log.info("audio conversion refused the upload: %s", exc.code,
                 extra={"event": "audio_failed", "audio_id": audio_id, "code": exc.code})
        return {"audio_id": audio_id, "status": AudioStatus.FAILED.value, "error": exc.code}
    store = AudioStore(settings.audio_dir)
    store.save(audio_id, converted.wav_bytes)
    with engine.begin() as conn:
        ready = conn.execute(
            sa.update(_audio)
            .where(_audio.c.id == audio_id, _audio.c.status == AudioStatus.PROCESSING)
            .values(status=AudioStatus.READY, source_format=converted.source_format,
                    duration_ms=converted.duration_ms, size_bytes=len(converted.wav_bytes), sha256=converted.sha256)
        ).rowcount
    if not ready:  # deleted while converting, or another run of this job finished it first
        with engine.connect() as conn:
            now_status = conn.scalar(sa.select(_audio.c.status).where(_audio.c.id == audio_id))
        if now_status != AudioStatus.READY:
            store.delete(audio_id)
    pending.delete(audio_id)
    log.info("audio converted", extra={"event": "audio_ready", "audio_id": audio_id,
                                       "duration_ms": converted.duration_ms, "source_format": converted.source_format})
    return {"audio_id": audio_id, "status": AudioStatus.READY.value if ready else "deleted",
            "duration_ms": converted.duration_ms}


def conversion_crashed(job: Any, connection: Any, exc_type: Any = None, exc_value: Any = None,
                       traceback: Any = None) -> None:
    """RQ's failure callback: the job raised, timed out or its work-horse died."""
    audio_id = str(job.args[0])
    settings = load_settings()
    reason = getattr(exc_type, "__name__", None) or "unknown"
    _fail(_engine(settings), audio_id, CRASHED, "The file could not be converted. Upload it again, or export it "
          "as WAV or MP3.", {"file": ["The file could not be converted."], "reason": reason})
    pending_uploads(settings).delete(audio_id)
    log.warning("audio conversion crashed: %s", reason, extra={"event": "audio_crashed", "audio_id": audio_id})


def _fail(engine: Engine, audio_id: str, code: str, message: str, details: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(_audio)
            .where(_audio.c.id == audio_id, _audio.c.status == AudioStatus.PROCESSING)
            .values(status=AudioStatus.FAILED, error_code=code[:32], error_message=message[:500],
                    error_details=details)
        )


def recover_stalled_conversions(engine: Engine, queue: Any, settings: Settings, *,
                                stall_seconds: int = STALL_SECONDS, limit: int = 100) -> dict[str, list[str]]:
    """Audio PROCESSING for longer than ``stall_seconds`` whose job is not waiting on ``queue``: its
    job was lost (a killed worker, a flushed Redis), so it is enqueued again (a spare run is harmless:
    every write is conditional); PROCESSING for longer than ``GIVE_UP_AFTER`` times that with no job
    waiting, it is FAILED. Returns the ids of both kinds."""
    from rq.job import JobStatus

    now = utcnow()
    stalled = now - timedelta(seconds=stall_seconds)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_audio.c.id, _audio.c.created_at)
            .where(_audio.c.status == AudioStatus.PROCESSING, _audio.c.created_at < stalled)
            .order_by(_audio.c.created_at).limit(limit)).all()
    out: dict[str, list[str]] = {"requeued": [], "failed": []}
    for audio_id, created_at in rows:
        job = queue.fetch_job(job_id(audio_id))
        status = job.get_status(refresh=False) if job is not None else None
        if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            continue  # waiting its turn behind other work
        if (status == JobStatus.STARTED and job.started_at is not None
                and job.started_at.replace(tzinfo=UTC) > now - timedelta(seconds=stall_seconds)):
            continue  # running, and not for longer than a job may
        if created_at < now - timedelta(seconds=stall_seconds * GIVE_UP_AFTER):
            _fail(engine, audio_id, CRASHED, "The file could not be converted. Upload it again, or export it "
                  "as WAV or MP3.", {"file": ["The file could not be converted."], "reason": "stalled"})
            pending_uploads(settings).delete(audio_id)
            out["failed"].append(audio_id)
            log.warning("audio conversion stalled for good; FAILED",
                        extra={"event": "audio_stalled_failed", "audio_id": audio_id})
            continue
        enqueue_conversion(queue, audio_id)
        out["requeued"].append(audio_id)
        log.warning("audio conversion stalled; enqueued again", extra={"event": "audio_requeued", "audio_id": audio_id})
    return out
