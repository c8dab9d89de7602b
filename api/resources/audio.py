"""/audio: upload (decoded, checked, converted once to 8 kHz mono PCM WAV), list, get,
download, delete (refused while a call or an active campaign still needs the file)."""

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
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import AudioSchema
from core.audio import AudioError, convert_upload
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


def own_ready_audio(audio_id: str) -> AudioFile:
    """The caller's audio, ready to play; 404 for anything else (other tenants included)."""
    audio = db().get(AudioFile, audio_id)
    if audio is None or audio.account_id != current().account_id or audio.status != AudioStatus.READY:
        raise not_found("Audio file")
    return audio


@blp.route("", methods=["POST"])
@require_auth
@blp.arguments(UploadForm, location="form")
@blp.arguments(UploadFiles, location="files")
@blp.response(201, AudioSchema)
def upload(form: dict[str, Any], files: dict[str, Any]) -> AudioFile:
    """Upload a message (WAV, MP3, OGG, FLAC). It is converted to 8 kHz mono 16-bit WAV."""
    settings = services().settings
    storage = files["file"]
    filename = upload_filename(storage.filename, "file")
    data = storage.stream.read(settings.max_audio_bytes + 1)
    if len(data) > settings.max_audio_bytes:
        raise ApiError(413, "AUDIO_TOO_LARGE",
                       f"The audio file is larger than {settings.max_audio_bytes // (1024 * 1024)} MB.",
                       {"file": [f"max {settings.max_audio_bytes} bytes"]})
    try:
        converted = convert_upload(data, max_bytes=settings.max_audio_bytes,
                                   max_seconds=settings.max_audio_seconds)
    except AudioError as exc:
        raise ApiError(exc.http_status, exc.code, exc.message, {"file": [exc.message]}) from None
    audio_id = new_id()
    services().audio.save(audio_id, converted.wav_bytes)
    audio = AudioFile(
        id=audio_id,
        account_id=current().account_id,
        name=form.get("name") or (filename or "message")[:200],
        original_filename=filename,
        source_format=converted.source_format,
        duration_ms=converted.duration_ms,
        size_bytes=len(converted.wav_bytes),
        sha256=converted.sha256,
    )
    session = db()
    session.add(audio)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        services().audio.delete(audio_id)
        raise
    return audio


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(AudioSchema, "AudioPage"))
def list_audio(args: dict[str, Any]) -> dict[str, Any]:
    """The account's audio files, newest first."""
    query = (
        sa.select(AudioFile)
        .where(AudioFile.account_id == current().account_id, AudioFile.status == AudioStatus.READY)
        .order_by(AudioFile.created_at.desc(), AudioFile.id)
    )
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:audio_id>", methods=["GET"])
@require_auth
@blp.response(200, AudioSchema)
def get_audio(audio_id: str) -> AudioFile:
    """One audio file's details."""
    return own_ready_audio(audio_id)


@blp.route("/<string:audio_id>/download", methods=["GET"])
@require_auth
@blp.response(200, content_type="audio/wav", description="The converted 8 kHz mono WAV")
def download(audio_id: str) -> Response:
    """Download the converted file, exactly as FreeSWITCH plays it."""
    audio = own_ready_audio(audio_id)
    path = services().audio.path_for(audio.id)
    if not path.exists():
        raise not_found("Audio file")
    return send_file(path, mimetype="audio/wav", as_attachment=True, download_name=f"{audio.id}.wav")


@blp.route("/<string:audio_id>", methods=["DELETE"])
@require_auth
@blp.response(204)
def delete(audio_id: str) -> None:
    """Delete an audio file; refused (409) while a pending call or an active campaign uses it."""
    audio = own_ready_audio(audio_id)
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
