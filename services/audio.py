"""Recorded messages: upload (checked, converted once to 8 kHz mono PCM WAV: in the request when
it fits the request's CPU budget, else by the worker), list, look up, delete (refused while a
call or an active campaign still needs the file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

import sqlalchemy as sa
from rq import Queue
from sqlalchemy.orm import Session

from core.audio import AudioError, AudioStore, Budget, ConversionDeferred, convert_upload
from core.audio.job import enqueue_conversion, pending_uploads
from core.call_states import FINAL
from core.campaign_states import CampaignStatus
from core.db import utcnow
from core.models import AudioFile, Call, Campaign, new_id
from core.settings import Settings
from core.states import AudioStatus
from services.errors import Refused, not_found

ACTIVE_CAMPAIGN = [CampaignStatus.IMPORTING, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING,
                   CampaignStatus.PAUSED]


@dataclass(frozen=True)
class AudioFiles:
    """Where messages go: the settings' limits, the converted files and the worker's queue."""

    settings: Settings
    store: AudioStore
    work_queue: Queue


def own_audio(session: Session, account_id: str, audio_id: str) -> AudioFile:
    """The account's audio in any state but DELETED; 404 for anything else (other tenants included)."""
    audio = session.get(AudioFile, audio_id)
    if audio is None or audio.account_id != account_id or audio.status == AudioStatus.DELETED:
        raise not_found("Audio file")
    return audio


def own_ready_audio(session: Session, account_id: str, audio_id: str) -> AudioFile:
    """The account's audio, ready to play: 404 as ``own_audio``, 409 ``AUDIO_NOT_READY`` while the
    worker converts it or after its conversion failed."""
    audio = own_audio(session, account_id, audio_id)
    if audio.status == AudioStatus.PROCESSING:
        raise Refused(409, "AUDIO_NOT_READY", "This audio file is still being converted. Retry when its status "
                      "is READY (GET /api/v1/audio/{id}).", {"audio_id": audio.id, "status": audio.status.value})
    if audio.status != AudioStatus.READY:
        raise Refused(409, "AUDIO_NOT_READY", "This audio file could not be converted and cannot be played: "
                      f"{audio.error_message or 'see its error'}",
                      {"audio_id": audio.id, "status": audio.status.value, "error": error_of(audio)})
    return audio


def error_of(audio: AudioFile) -> dict[str, Any] | None:
    """A FAILED audio's conversion error in the API's error shape."""
    if audio.status != AudioStatus.FAILED:
        return None
    return {"code": audio.error_code or "CONVERSION_FAILED", "message": audio.error_message or "",
            "details": audio.error_details or {}}


def read_upload(stream: IO[bytes], settings: Settings) -> bytes:
    """The uploaded bytes, read up to ``MAX_AUDIO_BYTES``: 413 ``AUDIO_TOO_LARGE`` beyond."""
    data = stream.read(settings.max_audio_bytes + 1)
    if len(data) > settings.max_audio_bytes:
        raise Refused(413, "AUDIO_TOO_LARGE",
                      f"The audio file is larger than {settings.max_audio_bytes // (1024 * 1024)} MB.",
                      {"file": [f"max {settings.max_audio_bytes} bytes"]})
    return data


def upload(session: Session, files: AudioFiles, account_id: str, data: bytes, name: str,
           filename: str | None) -> tuple[AudioFile, bool]:
    """Check and convert an upload: (the audio, True) when converted in the request (READY), or
    (the audio, False) when it is PROCESSING on the worker. Refused (413/422) for a file that
    cannot be a message, 503 when the worker's queue is unreachable."""
    settings = files.settings
    try:
        converted = convert_upload(data, max_bytes=settings.max_audio_bytes, max_seconds=settings.max_audio_seconds,
                                   max_samples=settings.max_audio_samples,
                                   budget=Budget.for_cpu_ms(settings.audio_inline_cpu_ms))
    except AudioError as exc:
        raise Refused(exc.http_status, exc.code, exc.message, exc.api_details()) from None
    except ConversionDeferred as deferred:
        return _convert_on_worker(session, files, account_id, data, name, filename, deferred.source_format), False
    audio_id = new_id()
    files.store.save(audio_id, converted.wav_bytes)
    audio = AudioFile(
        id=audio_id, account_id=account_id, name=name, original_filename=filename,
        source_format=converted.source_format, duration_ms=converted.duration_ms,
        size_bytes=len(converted.wav_bytes), sha256=converted.sha256,
    )
    _commit(session, audio, files.store)
    return audio, True


def _commit(session: Session, audio: AudioFile, store: Any) -> None:
    """Insert the audio; its file goes again if the insert fails."""
    session.add(audio)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        store.delete(audio.id)
        raise


def _convert_on_worker(session: Session, files: AudioFiles, account_id: str, data: bytes, name: str,
                       filename: str | None, source_format: str) -> AudioFile:
    """Store the upload for the worker, create the audio PROCESSING and enqueue its conversion."""
    pending = pending_uploads(files.settings)
    audio = AudioFile(id=new_id(), account_id=account_id, name=name, original_filename=filename,
                      status=AudioStatus.PROCESSING, source_format=source_format[:32], duration_ms=0, size_bytes=0,
                      sha256="")
    pending.save(audio.id, data)
    _commit(session, audio, pending)
    try:
        enqueue_conversion(files.work_queue, audio.id)
    except Exception:  # Redis down: nobody would convert it; say so instead of leaving it PROCESSING
        session.delete(audio)
        session.commit()
        pending.delete(audio.id)
        raise Refused(503, "SERVICE_UNAVAILABLE", "The conversion queue is unavailable. Try again shortly.") from None
    return audio


def list_query(account_id: str) -> sa.Select[Any]:
    """The account's audio files (READY, PROCESSING and FAILED), newest first."""
    return (
        sa.select(AudioFile)
        .where(AudioFile.account_id == account_id, AudioFile.status != AudioStatus.DELETED)
        .order_by(AudioFile.created_at.desc(), AudioFile.id)
    )


def ready_files(session: Session, account_id: str) -> list[AudioFile]:
    """The account's READY messages, newest first (what calls and campaigns can play)."""
    query = list_query(account_id).where(AudioFile.status == AudioStatus.READY)
    return list(session.execute(query).scalars())


def delete(session: Session, files: AudioFiles, account_id: str, audio_id: str) -> None:
    """Delete an audio file (also while it is converted); 409 ``AUDIO_IN_USE`` while a pending call
    or an active campaign uses it. Commits."""
    audio = own_audio(session, account_id, audio_id)
    pending_calls = session.execute(
        sa.select(sa.func.count()).select_from(Call).where(
            Call.audio_id == audio.id, Call.status.not_in([s.value for s in FINAL]))
    ).scalar_one()
    active_campaigns = session.execute(
        sa.select(sa.func.count()).select_from(Campaign).where(
            Campaign.audio_id == audio.id, Campaign.status.in_([s.value for s in ACTIVE_CAMPAIGN]))
    ).scalar_one()
    if pending_calls or active_campaigns:
        raise Refused(409, "AUDIO_IN_USE", "This audio file is still used by pending calls or active campaigns.",
                      {"pending_calls": pending_calls, "active_campaigns": active_campaigns})
    audio.status = AudioStatus.DELETED
    audio.deleted_at = utcnow()
    session.commit()
    files.store.delete(audio.id)
    pending_uploads(files.settings).delete(audio.id)
