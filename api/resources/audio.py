"""/audio: upload (checked, converted once to 8 kHz mono PCM WAV: in the request when it fits the
request's CPU budget, else by the worker), list, get, download, delete (refused while a call or an
active campaign still needs the file)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import send_file
from flask.wrappers import Response
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import ApiError, not_found
from api.limits import UPLOAD, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import AudioSchema
from core.audio import AudioError, AudioStore, Budget, ConversionDeferred, convert_upload
from core.audio.job import enqueue_conversion, pending_uploads
from core.call_states import FINAL
from core.campaign_states import CampaignStatus
from core.db import utcnow
from core.models import AudioFile, Call, Campaign, new_id
from core.states import AudioStatus

blp = Blueprint("audio", __name__, url_prefix="/api/v1/audio", description="Recorded messages")

ACTIVE_CAMPAIGN = [CampaignStatus.IMPORTING, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING,
                   CampaignStatus.PAUSED]


class UploadForm(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))


class UploadFiles(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


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
        raise ApiError(422, "INVALID_FILENAME", message, {field: [message]})
    return parts[-1][:255] or None


def own_audio(audio_id: str) -> AudioFile:
    """The caller's audio in any state but DELETED; 404 for anything else (other tenants included)."""
    audio = db().get(AudioFile, audio_id)
    if audio is None or audio.account_id != current().account_id or audio.status == AudioStatus.DELETED:
        raise not_found("Audio file")
    return audio


def own_ready_audio(audio_id: str) -> AudioFile:
    """The caller's audio, ready to play: 404 as ``own_audio``, 409 ``AUDIO_NOT_READY`` while the
    worker converts it or after its conversion failed."""
    audio = own_audio(audio_id)
    if audio.status == AudioStatus.PROCESSING:
        raise ApiError(409, "AUDIO_NOT_READY", "This audio file is still being converted. Retry when its status "
                       "is READY (GET /api/v1/audio/{id}).", {"audio_id": audio.id, "status": audio.status.value})
    if audio.status != AudioStatus.READY:
        raise ApiError(409, "AUDIO_NOT_READY", "This audio file could not be converted and cannot be played: "
                       f"{audio.error_message or 'see its error'}",
                       {"audio_id": audio.id, "status": audio.status.value, "error": error_of(audio)})
    return audio


def error_of(audio: AudioFile) -> dict[str, Any] | None:
    """A FAILED audio's conversion error in the API's error shape."""
    if audio.status != AudioStatus.FAILED:
        return None
    return {"code": audio.error_code or "CONVERSION_FAILED", "message": audio.error_message or "",
            "details": audio.error_details or {}}


class AudioResourceSchema(AudioSchema):
    """An audio with its conversion state: the converted file's figures are null until READY,
    ``error`` is set once FAILED."""

    duration_ms = ma.fields.Method("_duration_ms", allow_none=True)
    duration_seconds = ma.fields.Method("_seconds", allow_none=True)
    size_bytes = ma.fields.Method("_size_bytes", allow_none=True)
    sha256 = ma.fields.Method("_sha256", allow_none=True)
    error = ma.fields.Method("_error", allow_none=True,
                             metadata={"description": "set when status is FAILED: {code, message, details}"})

    def _ready(self, obj: Any, value: Any) -> Any:
        return value if obj.status == AudioStatus.READY else None

    def _duration_ms(self, obj: Any) -> int | None:
        return self._ready(obj, obj.duration_ms)  # type: ignore[no-any-return]

    def _seconds(self, obj: Any) -> float | None:
        return self._ready(obj, round(obj.duration_ms / 1000, 3))  # type: ignore[no-any-return]

    def _size_bytes(self, obj: Any) -> int | None:
        return self._ready(obj, obj.size_bytes)  # type: ignore[no-any-return]

    def _sha256(self, obj: Any) -> str | None:
        return self._ready(obj, obj.sha256)  # type: ignore[no-any-return]

    def _error(self, obj: Any) -> dict[str, Any] | None:
        return error_of(obj)


@blp.route("", methods=["POST"])
@require_auth
@route_limit(UPLOAD)
@blp.arguments(UploadForm, location="form")
@blp.arguments(UploadFiles, location="files")
@blp.response(201, AudioResourceSchema, description="Converted in the request: the audio is READY")
@blp.alt_response(202, schema=AudioResourceSchema,
                  description="Accepted and PROCESSING on the worker: poll GET /audio/{id} until READY or FAILED")
def upload(form: dict[str, Any], files: dict[str, Any]) -> Any:
    """Upload a message (WAV, MP3, M4A/AAC, AMR, 3GP, WebM/Opus, OGG, FLAC, AIFF), converted once to 8 kHz
    mono 16-bit WAV. Small files are converted in the request (201, READY); larger ones by the worker
    (202, PROCESSING, then READY or FAILED with ``error``). Header problems are refused at once (413/422)."""
    settings = services().settings
    storage = files["file"]
    filename = upload_filename(storage.filename, "file")
    data = storage.stream.read(settings.max_audio_bytes + 1)
    if len(data) > settings.max_audio_bytes:
        raise ApiError(413, "AUDIO_TOO_LARGE",
                       f"The audio file is larger than {settings.max_audio_bytes // (1024 * 1024)} MB.",
                       {"file": [f"max {settings.max_audio_bytes} bytes"]})
    name = form.get("name") or (filename or "message")[:200]
    try:
        converted = convert_upload(data, max_bytes=settings.max_audio_bytes, max_seconds=settings.max_audio_seconds,
                                   max_samples=settings.max_audio_samples,
                                   budget=Budget.for_cpu_ms(settings.audio_inline_cpu_ms))
    except AudioError as exc:
        raise ApiError(exc.http_status, exc.code, exc.message, exc.api_details()) from None
    except ConversionDeferred as deferred:
        audio = _convert_on_worker(data, name, filename, deferred.source_format)
        return audio, 202, {"Location": f"/api/v1/audio/{audio.id}"}
    audio_id = new_id()
    services().audio.save(audio_id, converted.wav_bytes)
    audio = AudioFile(
        id=audio_id,
        account_id=current().account_id,
        name=name,
        original_filename=filename,
        source_format=converted.source_format,
        duration_ms=converted.duration_ms,
        size_bytes=len(converted.wav_bytes),
        sha256=converted.sha256,
    )
    _commit(audio, services().audio)
    return audio


def _commit(audio: AudioFile, files: AudioStore) -> None:
    """Insert the audio; its file goes again if the insert fails."""
    session = db()
    session.add(audio)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        files.delete(audio.id)
        raise


def _convert_on_worker(data: bytes, name: str, filename: str | None, source_format: str) -> AudioFile:
    """Store the upload for the worker, create the audio PROCESSING and enqueue its conversion."""
    pending = pending_uploads(services().settings)
    audio = AudioFile(id=new_id(), account_id=current().account_id, name=name, original_filename=filename,
                      status=AudioStatus.PROCESSING, source_format=source_format[:32], duration_ms=0, size_bytes=0,
                      sha256="")
    pending.save(audio.id, data)
    _commit(audio, pending)
    session = db()
    try:
        enqueue_conversion(services().work_queue, audio.id)
    except Exception:  # Redis down: nobody would convert it; say so instead of leaving it PROCESSING
        session.delete(audio)
        session.commit()
        pending.delete(audio.id)
        raise ApiError(503, "SERVICE_UNAVAILABLE", "The conversion queue is unavailable. Try again shortly.") from None
    return audio


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(AudioResourceSchema, "AudioPage"))
def list_audio(args: dict[str, Any]) -> dict[str, Any]:
    """The account's audio files (READY, PROCESSING and FAILED), newest first."""
    query = (
        sa.select(AudioFile)
        .where(AudioFile.account_id == current().account_id, AudioFile.status != AudioStatus.DELETED)
        .order_by(AudioFile.created_at.desc(), AudioFile.id)
    )
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:audio_id>", methods=["GET"])
@require_auth
@blp.response(200, AudioResourceSchema)
def get_audio(audio_id: str) -> AudioFile:
    """One audio file's details, with its conversion state."""
    return own_audio(audio_id)


@blp.route("/<string:audio_id>/download", methods=["GET"])
@require_auth
@blp.response(200, content_type="audio/wav", description="The converted 8 kHz mono WAV")
def download(audio_id: str) -> Response:
    """Download the converted file, exactly as FreeSWITCH plays it (409 until the audio is READY)."""
    audio = own_ready_audio(audio_id)
    path = services().audio.path_for(audio.id)
    if not path.exists():
        raise not_found("Audio file")
    return send_file(path, mimetype="audio/wav", as_attachment=True, download_name=f"{audio.id}.wav")


@blp.route("/<string:audio_id>", methods=["DELETE"])
@require_auth
@blp.response(204)
def delete(audio_id: str) -> None:
    """Delete an audio file (also while it is converted); refused (409) while a pending call or an
    active campaign uses it."""
    audio = own_audio(audio_id)
    session = db()
    pending_calls = session.execute(
        sa.select(sa.func.count()).select_from(Call).where(
            Call.audio_id == audio.id, Call.status.not_in([s.value for s in FINAL]))
    ).scalar_one()
    active_campaigns = session.execute(
        sa.select(sa.func.count()).select_from(Campaign).where(
            Campaign.audio_id == audio.id, Campaign.status.in_([s.value for s in ACTIVE_CAMPAIGN]))
    ).scalar_one()
    if pending_calls or active_campaigns:
        raise ApiError(409, "AUDIO_IN_USE", "This audio file is still used by pending calls or active campaigns.",
                       {"pending_calls": pending_calls, "active_campaigns": active_campaigns})
    audio.status = AudioStatus.DELETED
    audio.deleted_at = utcnow()
    session.commit()
    services().audio.delete(audio.id)
    pending_uploads(services().settings).delete(audio.id)
