"""/audio: upload (checked, converted once to 8 kHz mono PCM WAV: in the request when it fits the
request's CPU budget, else by the worker), list, get, download, delete (refused while a call or an
active campaign still needs the file)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import send_file
from flask.wrappers import Response
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import not_found
from api.limits import UPLOAD, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import AudioSchema
from core.models import AudioFile
from core.states import AudioStatus
from services import audio as audio_service
from services.audio import AudioFiles, error_of
from services.uploads import upload_filename

blp = Blueprint("audio", __name__, url_prefix="/api/v1/audio", description="Recorded messages")


class UploadForm(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=200))


class UploadFiles(ma.Schema):
    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


def audio_files() -> AudioFiles:
    return AudioFiles(services().settings, services().audio, services().work_queue)


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
    storage = files["file"]
    filename = upload_filename(storage.filename, "file")
    data = audio_service.read_upload(storage.stream, services().settings)
    name = form.get("name") or (filename or "message")[:200]
    audio, ready = audio_service.upload(db(), audio_files(), current().account_id, data, name, filename)
    if ready:
        return audio
    return audio, 202, {"Location": f"/api/v1/audio/{audio.id}"}


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(AudioResourceSchema, "AudioPage"))
def list_audio(args: dict[str, Any]) -> dict[str, Any]:
    """The account's audio files (READY, PROCESSING and FAILED), newest first."""
    items, meta = paginate(db(), audio_service.list_query(current().account_id), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:audio_id>", methods=["GET"])
@require_auth
@blp.response(200, AudioResourceSchema)
def get_audio(audio_id: str) -> AudioFile:
    """One audio file's details, with its conversion state."""
    return audio_service.own_audio(db(), current().account_id, audio_id)


@blp.route("/<string:audio_id>/download", methods=["GET"])
@require_auth
@blp.response(200, content_type="audio/wav", description="The converted 8 kHz mono WAV")
def download(audio_id: str) -> Response:
    """Download the converted file, exactly as FreeSWITCH plays it (409 until the audio is READY)."""
    audio = audio_service.own_ready_audio(db(), current().account_id, audio_id)
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
    audio_service.delete(db(), audio_files(), current().account_id, audio_id)
