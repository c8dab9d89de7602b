"""/audio: upload (WAV, MP3) converted to 8 kHz mono WAV, list, get, download, delete."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from tests.api.conftest import assert_error
from tests.conftest import wav_bytes

AUDIO_FIELDS = {"id", "name", "status", "original_filename", "source_format", "duration_ms", "duration_seconds",
                "size_bytes", "sample_rate", "channels", "sha256", "created_at"}


def mp3_bytes(seconds: float = 1.5, rate: int = 44100) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="MP3")
    return buf.getvalue()


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
    assert audio["status"] == "READY"
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
