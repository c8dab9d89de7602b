"""/audio: every accepted kind uploaded through the API, converted in the request (201) or by the
worker (202 PROCESSING -> READY / FAILED), the decoded-work cap, the upload limit, list, get,
download, delete, and calls and campaigns refusing an audio that is not READY."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import sqlalchemy as sa
from rq import SimpleWorker
from rq.job import JobStatus

from core.audio.job import STALL_SECONDS, job_id, pending_uploads, recover_stalled_conversions
from core.models import AudioFile
from tests.api.conftest import assert_error
from tests.conftest import wav_bytes
from tests.unit.audio_samples import encode_sf, sample, tone

AUDIO_FIELDS = {"id", "name", "status", "original_filename", "source_format", "duration_ms", "duration_seconds",
                "size_bytes", "sample_rate", "channels", "sha256", "created_at", "error"}


def mp3_bytes(seconds: float = 1.5, rate: int = 44100) -> bytes:
    return encode_sf(0.6 * tone(rate, seconds), rate, "MP3", "MPEG_LAYER_III")


def upload(client, tenant, data: bytes, filename: str, **form):
    return client.post("/api/v1/audio", headers=tenant.headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(data), filename), **form})


def test_upload_wav_is_converted(client, tenant):
    response = upload(client, tenant, wav_bytes(2.0, rate=44100, channels=2), "promo.wav", name="Promo")
    assert response.status_code == 201, response.get_json()
    audio = response.get_json()
    assert set(audio) == AUDIO_FIELDS
    assert audio["name"] == "Promo"
    assert audio["original_filename"] == "promo.wav"
    assert audio["status"] == "READY" and audio["error"] is None
    assert audio["sample_rate"] == 8000 and audio["channels"] == 1
    assert abs(audio["duration_ms"] - 2000) <= 20
    assert audio["duration_seconds"] == round(audio["duration_ms"] / 1000, 3)


def test_upload_mp3(client, tenant):
    response = upload(client, tenant, mp3_bytes(), "jingle.mp3")
    assert response.status_code == 201, response.get_json()
    audio = response.get_json()
    assert audio["name"] == "jingle.mp3"  # no name given: the file's name
    assert "mp3" in audio["source_format"].lower()
    assert 1400 <= audio["duration_ms"] <= 1700


@pytest.mark.parametrize(("kind", "filename"), [
    ("M4A/AAC", "Voice Memo.m4a"), ("3GP/AMR-NB", "record.3gp"), ("AMR-NB", "call.amr"), ("AMR-WB", "wide.awb"),
    ("3GP/AMR-WB", "wide.3gp"), ("WebM/Opus", "recording.webm"), ("OGG/Opus", "voice.ogg"), ("AAC", "rec.aac"),
])  # fmt: skip
def test_phone_and_browser_recordings_are_accepted(client, make_tenant, kind, filename):
    tenant = make_tenant()
    response = upload(client, tenant, sample(kind, 2.0), filename)
    assert response.status_code == 201, response.get_json()
    audio = response.get_json()
    assert (audio["status"], audio["source_format"]) == ("READY", kind)
    assert abs(audio["duration_ms"] - 2000) <= 50  # AAC priming and padding, whole AMR frames
    wav = client.get(f"/api/v1/audio/{audio['id']}/download", headers=tenant.headers)
    info = sf.info(io.BytesIO(wav.data))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")


def test_download_is_8khz_mono_pcm_wav(client, tenant, upload_audio):
    audio = upload_audio(tenant, seconds=1.0)
    response = client.get(f"/api/v1/audio/{audio['id']}/download", headers=tenant.headers)
    assert response.status_code == 200
    assert response.mimetype in ("audio/wav", "audio/x-wav")
    assert "attachment" in response.headers["Content-Disposition"]
    info = sf.info(io.BytesIO(response.data))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (8000, 1, "WAV", "PCM_16")
    assert abs(info.duration - 1.0) < 0.02
    assert len(response.data) == audio["size_bytes"]


def test_not_audio_is_422(client, tenant):
    error = assert_error(upload(client, tenant, b"this is not audio at all" * 50, "notes.wav"), 422)
    assert "file" in error["details"]


def test_missing_file_is_422(client, tenant):
    error = assert_error(client.post("/api/v1/audio", headers=tenant.headers, data={"name": "x"},
                                     content_type="multipart/form-data"), 422)
    assert "file" in error["details"]


def test_audio_too_large_is_413(make_app, tenant):
    small = make_app(max_audio_bytes=10_000).test_client()
    error = assert_error(upload(small, tenant, wav_bytes(2.0), "big.wav"), 413)
    assert "file" in error["details"]


def test_audio_too_long_is_422(make_app, tenant):
    short = make_app(max_audio_seconds=1.0).test_client()
    error = assert_error(upload(short, tenant, wav_bytes(2.0, rate=8000), "long.wav"), 422)
    assert "file" in error["details"]


def test_too_much_decoded_work_is_422_naming_the_limit(make_app, tenant):
    app = make_app(max_audio_samples=2_000_000)
    heavy = encode_sf(np.zeros((192_000 * 3, 8), dtype=np.float32), 192_000, "FLAC", "PCM_16")  # 4.6 M samples
    error = assert_error(upload(app.test_client(), tenant, heavy, "studio.flac"), 422, "AUDIO_TOO_COMPLEX")
    assert "max_samples" in error["message"]
    assert error["details"]["max_samples"] == 2_000_000 and error["details"]["samples"] == 4_608_000
    assert error["details"]["file"] == [error["message"]]


# --- conversion on the worker -------------------------------------------------------------------


@pytest.fixture()
def worker_env(settings, monkeypatch) -> Any:
    """The worker's environment (it reads its settings from there, like `rq worker` does)."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("AUDIO_DIR", str(settings.audio_dir))
    return monkeypatch


@pytest.fixture()
def worker_app(make_app) -> Any:
    """The API with no CPU budget for conversions: every upload goes to the worker."""
    return make_app(audio_inline_cpu_ms=0)


def run_job(app: Any, audio_id: str) -> Any:
    """Take this audio's job off the real queue and run it as `rq worker` would (in this process)."""
    queue = app.extensions["zenscall"].work_queue
    job = queue.fetch_job(job_id(audio_id))
    assert job is not None, "no conversion job enqueued"
    queue.remove(job)
    SimpleWorker([queue], connection=queue.connection).execute_job(job, queue)
    return job


def test_heavy_upload_is_202_processing_then_ready(worker_app, worker_env, settings, tenant, place_call):
    client = worker_app.test_client()
    response = upload(client, tenant, sample("M4A/AAC", 2.0), "memo.m4a", name="Memo")
    assert response.status_code == 202, response.get_json()
    audio = response.get_json()
    assert set(audio) == AUDIO_FIELDS
    assert (audio["status"], audio["source_format"], audio["name"]) == ("PROCESSING", "M4A/AAC", "Memo")
    assert audio["duration_ms"] is None and audio["sha256"] is None and audio["error"] is None
    assert response.headers["Location"] == f"/api/v1/audio/{audio['id']}"
    assert pending_uploads(settings).path_for(audio["id"]).is_file()

    # not playable yet: calls, campaigns and the download say so
    error = assert_error(place_call(tenant, audio["id"]), 409, "AUDIO_NOT_READY")
    assert error["details"]["status"] == "PROCESSING"
    assert_error(client.get(f"/api/v1/audio/{audio['id']}/download", headers=tenant.headers), 409, "AUDIO_NOT_READY")
    assert_error(client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                             data={"name": "c", "audio_id": audio["id"],
                                   "csv_file": (io.BytesIO(b"phone\n03001234567\n"), "n.csv")}),
                 409, "AUDIO_NOT_READY")
    assert client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).get_json()["status"] == "PROCESSING"

    job = run_job(worker_app, audio["id"])
    assert job.get_status().value == "finished", job.latest_result()

    ready = client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).get_json()
    assert ready["status"] == "READY" and ready["error"] is None
    assert abs(ready["duration_ms"] - 2000) <= 40
    assert not pending_uploads(settings).path_for(audio["id"]).exists()
    wav = client.get(f"/api/v1/audio/{audio['id']}/download", headers=tenant.headers)
    assert len(wav.data) == ready["size_bytes"] and sf.info(io.BytesIO(wav.data)).samplerate == 8000
    assert place_call(tenant, audio["id"]).status_code == 201


def test_worker_refusal_is_failed_with_the_error_in_the_documented_shape(make_app, worker_env, settings, tenant,
                                                                          place_call):
    # an MP3 states no length: the request cannot know it is too long, the worker finds out
    app = make_app(audio_inline_cpu_ms=0, max_audio_seconds=1.0)
    worker_env.setenv("MAX_AUDIO_SECONDS", "1")
    client = app.test_client()
    audio = upload(client, tenant, mp3_bytes(3.0), "long.mp3").get_json()
    assert audio["status"] == "PROCESSING"
    run_job(app, audio["id"])

    failed = client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).get_json()
    assert failed["status"] == "FAILED" and failed["duration_ms"] is None
    error = failed["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "AUDIO_TOO_LONG" and error["details"]["file"] == [error["message"]]
    assert not pending_uploads(settings).path_for(audio["id"]).exists()
    refused = assert_error(place_call(tenant, audio["id"]), 409, "AUDIO_NOT_READY")
    assert refused["details"]["error"]["code"] == "AUDIO_TOO_LONG"
    listed = client.get("/api/v1/audio", headers=tenant.headers).get_json()["data"]
    assert {a["id"]: a["status"] for a in listed} == {audio["id"]: "FAILED"}
    assert client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).status_code == 204


def test_a_job_that_crashes_leaves_the_audio_failed_not_processing(worker_app, worker_env, tmp_path, tenant):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("x")
    worker_env.setenv("AUDIO_DIR", str(blocked / "audio"))  # a worker whose audio directory is broken: the job raises
    client = worker_app.test_client()
    audio = upload(client, tenant, sample("OGG/Opus", 1.0), "v.ogg").get_json()
    job = run_job(worker_app, audio["id"])
    assert job.get_status().value == "failed"

    failed = client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).get_json()
    assert failed["status"] == "FAILED"
    assert failed["error"]["code"] == "CONVERSION_FAILED"
    assert failed["error"]["details"]["reason"] in ("NotADirectoryError", "FileExistsError")


def test_deleted_while_processing_leaves_no_file(worker_app, worker_env, settings, tenant):
    client = worker_app.test_client()
    audio = upload(client, tenant, sample("WebM/Opus", 1.0), "r.webm").get_json()
    assert client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).status_code == 204
    assert not pending_uploads(settings).path_for(audio["id"]).exists()
    job = run_job(worker_app, audio["id"])
    assert job.get_status().value == "finished"
    assert not (Path(settings.audio_dir) / f"{audio['id']}.wav").exists()
    assert_error(client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers), 404, "NOT_FOUND")


def _age(app: Any, audio_id: str, seconds: int) -> None:
    """Make the audio look uploaded ``seconds`` ago."""
    engine = app.extensions["zenscall"].engine
    audio = AudioFile.__table__
    with engine.begin() as conn:
        created = conn.scalar(sa.select(audio.c.created_at).where(audio.c.id == audio_id))
        conn.execute(sa.update(audio).where(audio.c.id == audio_id)
                     .values(created_at=created - timedelta(seconds=seconds)))


def test_a_lost_conversion_job_is_enqueued_again_then_given_up(worker_app, worker_env, settings, tenant):
    """The worker killed outright or Redis flushed: no job and no failure callback. The worker's
    maintenance finds the audio PROCESSING past a job's longest run and enqueues it again; one
    waiting its turn is left alone; one stalled for good ends FAILED, never PROCESSING for ever."""
    client = worker_app.test_client()
    wiring = worker_app.extensions["zenscall"]
    queue, engine = wiring.work_queue, wiring.engine
    lost = upload(client, tenant, sample("OGG/Opus", 1.0), "lost.ogg").get_json()["id"]
    waiting = upload(client, tenant, sample("OGG/Opus", 1.0), "waiting.ogg").get_json()["id"]
    queue.fetch_job(job_id(lost)).delete()  # the job is gone, as after a Redis flush
    assert recover_stalled_conversions(engine, queue, settings) == {"requeued": [], "failed": []}  # too young

    _age(worker_app, lost, STALL_SECONDS + 5)
    _age(worker_app, waiting, STALL_SECONDS * 10)  # old, but its job still waits on the queue
    assert recover_stalled_conversions(engine, queue, settings) == {"requeued": [lost], "failed": []}
    run_job(worker_app, lost)
    assert client.get(f"/api/v1/audio/{lost}", headers=tenant.headers).get_json()["status"] == "READY"

    running = queue.fetch_job(job_id(waiting))  # a worker took it a moment ago: left alone
    queue.remove(running)
    running.started_at = datetime.now(UTC)
    running.set_status(JobStatus.STARTED)
    running.save()
    assert recover_stalled_conversions(engine, queue, settings) == {"requeued": [], "failed": []}

    running.delete()
    assert recover_stalled_conversions(engine, queue, settings) == {"requeued": [], "failed": [waiting]}
    failed = client.get(f"/api/v1/audio/{waiting}", headers=tenant.headers).get_json()
    assert failed["status"] == "FAILED" and failed["error"]["code"] == "CONVERSION_FAILED"
    assert not pending_uploads(settings).path_for(waiting).exists()


def test_queue_down_is_503_and_nothing_is_kept(make_app, settings, tenant):
    app = make_app(audio_inline_cpu_ms=0, redis_url="redis://127.0.0.1:1/0")
    uploads_before = set(pending_uploads(settings).root.glob("*"))
    error = assert_error(upload(app.test_client(), tenant, sample("OGG/Opus", 1.0), "v.ogg"), 503)
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert set(pending_uploads(settings).root.glob("*")) == uploads_before
    listed = app.test_client().get("/api/v1/audio", headers=tenant.headers).get_json()
    assert listed["data"] == []


def test_small_uploads_stay_in_the_request_with_the_default_budget(client, tenant, settings):
    assert settings.audio_inline_cpu_ms == 100
    response = upload(client, tenant, sample("WebM/Opus", 5.0), "browser.webm")
    assert response.status_code == 201 and response.get_json()["status"] == "READY"


# --- the upload limit ----------------------------------------------------------------------------


def test_uploads_are_limited_per_api_key(make_app, make_tenant):
    client = make_app(ratelimit_upload="2 per minute").test_client()
    first, second = make_tenant(), make_tenant()
    for _ in range(2):
        assert upload(client, first, wav_bytes(0.5), "m.wav").status_code == 201
    error = assert_error(upload(client, first, wav_bytes(0.5), "m.wav"), 429, "RATE_LIMITED")
    assert "2 per 1 minute" in error["message"]
    assert upload(client, second, wav_bytes(0.5), "m.wav").status_code == 201  # another key, its own count
    # reading is not limited by it
    assert client.get("/api/v1/audio", headers=first.headers).status_code == 200


# --- list, get, delete ---------------------------------------------------------------------------


def test_list_get_and_pagination(client, make_tenant, upload_audio):
    tenant = make_tenant()
    ids = [upload_audio(tenant, seconds=0.5, name=f"m{n}")["id"] for n in range(3)]
    page = client.get("/api/v1/audio?page=1&per_page=2", headers=tenant.headers).get_json()
    assert set(page) == {"data", "pagination"}
    assert page["pagination"] == {"page": 1, "per_page": 2, "total": 3, "total_pages": 2,
                                  "has_next": True, "has_prev": False}
    second = client.get("/api/v1/audio?page=2&per_page=2", headers=tenant.headers).get_json()
    assert {a["id"] for a in page["data"] + second["data"]} == set(ids)
    one = client.get(f"/api/v1/audio/{ids[0]}", headers=tenant.headers)
    assert one.status_code == 200 and set(one.get_json()) == AUDIO_FIELDS
    assert_error(client.get("/api/v1/audio?per_page=0", headers=tenant.headers), 422)
    assert_error(client.get("/api/v1/audio?per_page=101", headers=tenant.headers), 422)


def test_delete(client, tenant, upload_audio):
    audio = upload_audio(tenant)
    assert client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).status_code == 204
    assert_error(client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers), 404, "NOT_FOUND")
    assert_error(client.get(f"/api/v1/audio/{audio['id']}/download", headers=tenant.headers), 404)
    assert_error(client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers), 404)
    listed = client.get("/api/v1/audio", headers=tenant.headers).get_json()
    assert audio["id"] not in {a["id"] for a in listed["data"]}


def test_delete_refused_while_a_queued_call_uses_it(client, tenant, upload_audio, place_call):
    audio = upload_audio(tenant)
    call = place_call(tenant, audio["id"]).get_json()
    error = assert_error(client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers), 409, "AUDIO_IN_USE")
    assert error["details"]["pending_calls"] == 1
    assert client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).status_code == 200
    # once the call is over, the file can go
    assert client.post(f"/api/v1/calls/{call['id']}/cancel", headers=tenant.headers).status_code == 200
    assert client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).status_code == 204


def test_deleted_audio_cannot_be_called(client, tenant, upload_audio, place_call):
    audio = upload_audio(tenant)
    client.delete(f"/api/v1/audio/{audio['id']}", headers=tenant.headers)
    assert_error(place_call(tenant, audio["id"]), 404, "NOT_FOUND")
