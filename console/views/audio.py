"""Messages: upload (or record in the browser), list, play, delete."""

from __future__ import annotations

from flask import flash, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue

from console import web
from console.views import blp
from core.rate_limits import UPLOAD
from services import audio as audio_service
from services.errors import Refused
from services.pages import paginate
from services.uploads import upload_filename


@blp.route("/audio")
@web.signed_in
def audio() -> ResponseReturnValue:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    items, meta = paginate(web.db(), audio_service.list_query(web.account_id()), page, 20)
    return render_template("audio.html", files=items, pagination=meta, error_of=audio_service.error_of)


@blp.route("/audio", methods=["POST"])
@web.signed_in
def upload_audio() -> ResponseReturnValue:
    # the API's upload limit, in the bucket of this user's access tokens
    web.limit(web.settings().ratelimit_upload, UPLOAD, f"user:{web.user().id}")
    storage = request.files.get("file")
    try:
        if storage is None:
            raise Refused(422, "VALIDATION_ERROR", "Choose a file or record a message.", {"file": ["required"]})
        filename = upload_filename(storage.filename, "file")
        name = request.form.get("name", "").strip()[:200] or (filename or "message")[:200]
        data = audio_service.read_upload(storage.stream, web.settings())
        row, ready = audio_service.upload(web.db(), web.audio_files(), web.account_id(), data, name, filename)
    except Refused as exc:
        web.show_refusal(exc)
        return web.go(url_for("console.audio"))
    flash(f"“{row.name}” is {'ready' if ready else 'being converted'}.", "info")
    return web.go(url_for("console.audio"))


@blp.route("/audio/<audio_id>.wav")
@web.signed_in
def play_audio(audio_id: str) -> ResponseReturnValue:
    row = audio_service.own_ready_audio(web.db(), web.account_id(), audio_id)
    path = web.wiring().audio.path_for(row.id)
    if not path.exists():
        raise Refused(404, "NOT_FOUND", "Audio file not found.")
    return send_file(path, mimetype="audio/wav", conditional=True)


@blp.route("/audio/<audio_id>/delete", methods=["POST"])
@web.signed_in
def delete_audio(audio_id: str) -> ResponseReturnValue:
    return web.act(lambda: audio_service.delete(web.db(), web.audio_files(), web.account_id(), audio_id),
                   "The message is deleted.", url_for("console.audio"))
