"""Upload conversion to 8 kHz mono PCM_16 WAV, hostile inputs, and the on-disk store."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf  # type: ignore[import-untyped]

from core.audio import (
    AudioError,
    AudioStore,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    ConvertedAudio,
    InvalidAudioId,
    NotAudio,
    UnsupportedAudio,
    convert_upload,
)

MB = 1 << 20
LIMITS = {"max_bytes": 20 * MB, "max_seconds": 120.0}


def tone(
    rate: int, seconds: float, channels: int = 1, freq: float = 440.0, amp: float = 0.5
) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def encode(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav16(seconds: float, rate: int = 8000) -> bytes:
    return encode(tone(rate, seconds), rate, "WAV", "PCM_16")


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


SOURCES = [
    # (format, subtype, rate, channels, expected source_format)
    ("WAV", "PCM_16", 44100, 2, "WAV"),
    ("WAV", "PCM_16", 8000, 1, "WAV"),
    ("WAV", "FLOAT", 16000, 1, "WAV"),
    ("WAV", "PCM_24", 48000, 2, "WAV"),
    ("MP3", "MPEG_LAYER_III", 44100, 2, "MP3"),
    ("OGG", "VORBIS", 48000, 1, "OGG"),
    ("OGG", "OPUS", 48000, 2, "OGG"),  # WhatsApp voice notes
    ("FLAC", "PCM_16", 22050, 1, "FLAC"),
    ("AIFF", "PCM_16", 44100, 1, "AIFF"),
]


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels", "source_format"), SOURCES
)
def test_converts_to_8k_mono_pcm16(
    fmt: str, subtype: str, rate: int, channels: int, source_format: str
) -> None:
    seconds, freq = 1.5, 440.0
    data = encode(tone(rate, seconds, channels, freq), rate, fmt, subtype)

    out = convert_upload(data, **LIMITS)

    assert isinstance(out, ConvertedAudio)
    info = sf.info(io.BytesIO(out.wav_bytes))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        "WAV",
        "PCM_16",
        8000,
        1,
    )
    assert len(out.wav_bytes) == 44 + info.frames * 2  # canonical header, nothing else
    assert out.wav_bytes[:4] == b"RIFF"
    assert out.wav_bytes[36:40] == b"data"
    assert abs(out.duration_ms - seconds * 1000) <= 20
    assert abs(info.frames / 8000 * 1000 - out.duration_ms) <= 1
    assert out.source_format == source_format
    assert out.source_sample_rate == rate
    assert out.source_channels == channels
    assert out.sha256 == hashlib.sha256(out.wav_bytes).hexdigest()
    samples, _ = sf.read(io.BytesIO(out.wav_bytes), dtype="float32")
    assert abs(peak_hz(samples, 8000) - freq) < 5
    assert 0.3 < float(np.max(np.abs(samples))) <= 0.6  # level kept, no clipping


def test_accepts_a_file_object_and_downmixes_by_mean() -> None:
    left = tone(44100, 1.0, 1, 300.0)[:, 0]
    right = tone(44100, 1.0, 1, 1000.0)[:, 0]
    data = encode(np.stack([left, right], axis=1), 44100, "WAV", "PCM_16")
    out = convert_upload(io.BytesIO(data), **LIMITS)
    samples, _ = sf.read(io.BytesIO(out.wav_bytes), dtype="float32")
    spectrum = np.abs(np.fft.rfft(samples))
    bins = {f: spectrum[round(f * len(samples) / 8000)] for f in (300, 1000)}
    # both channels present, with equal weight
    assert bins[300] == pytest.approx(bins[1000], rel=0.1)


def test_high_frequencies_are_filtered_not_aliased() -> None:
    data = encode(tone(44100, 1.0, 1, 6000.0), 44100, "WAV", "PCM_16")
    samples, _ = sf.read(
        io.BytesIO(convert_upload(data, **LIMITS).wav_bytes), dtype="float32"
    )
    steady = samples[400:-400]  # away from the start/stop clicks of the test tone
    # 6 kHz is above the 4 kHz Nyquist frequency of the 8 kHz output
    assert float(np.max(np.abs(steady))) < 0.01


def test_float_wav_out_of_range_and_nan_is_clipped() -> None:
    x = tone(8000, 1.0, amp=4.0)
    x[100:200] = np.nan
    out = convert_upload(encode(x, 8000, "WAV", "FLOAT"), **LIMITS)
    samples, _ = sf.read(io.BytesIO(out.wav_bytes), dtype="int16")
    assert samples.max() == 32767
    assert samples.min() == -32767
    assert (samples[100:200] == 0).all()


def test_same_input_same_output() -> None:
    data = encode(tone(44100, 1.0, 2), 44100, "WAV", "PCM_16")
    assert convert_upload(data, **LIMITS) == convert_upload(bytearray(data), **LIMITS)


# --- rejections -------------------------------------------------------------------------------


def _truncated_wav() -> bytes:
    return wav16(1.0)[:30]


def _random_bytes() -> bytes:
    return np.random.default_rng(3).bytes(4096)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", NotAudio, id="empty"),
        pytest.param(_random_bytes(), NotAudio, id="random-bytes"),
        pytest.param(
            b"\xff\xfb\x90\x00" + _random_bytes(), NotAudio, id="random-after-mp3-sync"
        ),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(200), NotAudio, id="png"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(200), NotAudio, id="jpeg"),
        pytest.param(b"phone\n03001234567\n" * 50, NotAudio, id="text"),
        pytest.param(b"%PDF-1.7\n" + bytes(300), NotAudio, id="pdf"),
        pytest.param(_truncated_wav(), NotAudio, id="truncated-wav"),
        pytest.param(wav16(1.0)[:44], NotAudio, id="wav-header-only"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", NotAudio, id="wav-cut-in-fmt"),
        pytest.param(b"OggS" + bytes(500), NotAudio, id="fake-ogg"),
        pytest.param(b"fLaC" + b"\x01" * 100, NotAudio, id="fake-flac"),
        pytest.param(b"ID3" + bytes(1000), NotAudio, id="id3-no-frames"),
        pytest.param(
            b"\x00\x00\x00\x20ftypM4A " + bytes(100), UnsupportedAudio, id="m4a"
        ),
        pytest.param(b"#!AMR\n" + bytes(100), UnsupportedAudio, id="amr"),
        pytest.param(
            encode(tone(8000, 1.0), 8000, "AU", "PCM_16"), UnsupportedAudio, id="au"
        ),
    ],
)
def test_rejects_non_audio(data: bytes, error: type[AudioError]) -> None:
    with pytest.raises(error) as info:
        convert_upload(data, **LIMITS)
    assert info.value.code == error.code
    assert info.value.message


def test_too_large_bytes_and_stream() -> None:
    data = wav16(2.0)
    with pytest.raises(AudioTooLarge) as info:
        convert_upload(data, max_bytes=len(data) - 1, max_seconds=60)
    assert info.value.code == "AUDIO_TOO_LARGE"
    assert info.value.http_status == 413

    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            b[:] = b"\0" * len(b)
            self.served += len(b)
            return len(b)

    endless = Endless()
    with pytest.raises(AudioTooLarge):
        convert_upload(endless, max_bytes=3 * MB, max_seconds=60)
    assert endless.served <= 3 * MB + 1  # stopped reading just past the limit

    assert convert_upload(data, max_bytes=len(data), max_seconds=60).duration_ms == 2000


def test_too_long_and_too_short() -> None:
    with pytest.raises(AudioTooLong) as info:
        convert_upload(wav16(3.0), max_bytes=MB, max_seconds=2.0)
    assert info.value.code == "AUDIO_TOO_LONG"
    assert info.value.details["max_seconds"] == 2.0
    assert convert_upload(wav16(2.0), max_bytes=MB, max_seconds=2.0).duration_ms == 2000

    with pytest.raises(AudioTooShort) as short:
        convert_upload(wav16(0.1), max_bytes=MB, max_seconds=60)
    assert short.value.code == "AUDIO_TOO_SHORT"
    assert (
        convert_upload(
            wav16(0.5), max_bytes=MB, max_seconds=60, min_seconds=0.5
        ).duration_ms
        == 500
    )


def test_wav_header_claiming_ten_hours_fails_before_decoding() -> None:
    data = bytearray(wav16(1.0))
    declared = 10 * 3600 * 8000 * 2
    struct.pack_into("<I", data, 4, 36 + declared)
    struct.pack_into("<I", data, 40, declared)
    with pytest.raises(AudioTooLong) as info:
        convert_upload(bytes(data), max_bytes=MB, max_seconds=300)
    assert info.value.details["duration_seconds"] == 36000


def _flac_with_declared_samples(data: bytes, total: int) -> bytes:
    """Rewrite the 36-bit total-samples field of FLAC STREAMINFO."""
    out = bytearray(data)
    assert out[:4] == b"fLaC"
    out[21] = (out[21] & 0xF0) | ((total >> 32) & 0x0F)
    out[22:26] = (total & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(out)


def test_flac_header_claiming_ten_hours_fails_before_decoding() -> None:
    flac = encode(np.zeros(8000, dtype=np.float32), 8000, "FLAC", "PCM_16")
    with pytest.raises(AudioTooLong):
        convert_upload(
            _flac_with_declared_samples(flac, 10 * 3600 * 8000),
            max_bytes=MB,
            max_seconds=300,
        )


def test_flac_without_declared_length_is_unsupported() -> None:
    flac = encode(np.zeros(8000 * 3, dtype=np.float32), 8000, "FLAC", "PCM_16")
    with pytest.raises(UnsupportedAudio):
        convert_upload(
            _flac_with_declared_samples(flac, 0), max_bytes=MB, max_seconds=300
        )


def test_mp3_length_is_enforced_while_decoding() -> None:
    mp3 = encode(tone(22050, 3.0), 22050, "MP3", "MPEG_LAYER_III")
    with pytest.raises(AudioTooLong) as info:
        convert_upload(mp3, max_bytes=MB, max_seconds=1.0)
    # stopped mid-decode, not from the header's estimate
    assert "over" in info.value.message


def test_silent_compression_bomb_is_stopped_by_the_duration_limit() -> None:
    # Six minutes of silence compress to a few kB of FLAC; the limit stops it, whatever the size.
    bomb = encode(np.zeros(48000 * 360, dtype=np.float32), 48000, "FLAC", "PCM_16")
    assert len(bomb) < 100_000
    with pytest.raises(AudioTooLong):
        convert_upload(bomb, max_bytes=MB, max_seconds=60)


@pytest.mark.parametrize(
    ("rate", "channels"),
    [(1000, 1), (500_000, 1), (8000, 32)],
)
def test_absurd_headers_are_unsupported(rate: int, channels: int) -> None:
    data = bytearray(wav16(1.0))
    block_align = 2 * channels
    struct.pack_into(
        "<HHIIH", data, 20, 1, channels, rate, rate * block_align, block_align
    )
    with pytest.raises(UnsupportedAudio):
        convert_upload(bytes(data), max_bytes=MB, max_seconds=300)


def test_ten_minutes_of_48k_stereo_decode_in_bounded_memory() -> None:
    buf = io.BytesIO()
    # 440 Hz repeats exactly every 10 s, so the blocks join seamlessly
    block = tone(48000, 10.0, 2, amp=0.1)
    with sf.SoundFile(buf, "w", 48000, 2, format="FLAC", subtype="PCM_16") as snd:
        for _ in range(60):
            snd.write(block)
    flac = buf.getvalue()
    tracemalloc.start()
    try:
        out = convert_upload(flac, max_bytes=50 * MB, max_seconds=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.duration_ms == 600_000
    # The output itself is 9.6 MB; the decoded source (230 MB as float32) is never held at once.
    assert peak < 40 * MB


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="limits"):
        convert_upload(wav16(1.0), max_bytes=0, max_seconds=10)


# --- AudioStore ---------------------------------------------------------------------------------


def test_store_save_read_delete(tmp_path: Path) -> None:
    store = AudioStore(tmp_path / "audio" / "nested")
    audio_id = str(uuid.uuid4())
    out = convert_upload(wav16(1.0), **LIMITS)

    assert not store.exists(audio_id)
    path = store.save(audio_id, out.wav_bytes)

    assert path == tmp_path / "audio" / "nested" / f"{audio_id}.wav"
    assert path == store.path_for(audio_id)
    assert path.read_bytes() == out.wav_bytes
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert store.exists(audio_id)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left

    store.save(audio_id, b"replaced")
    assert path.read_bytes() == b"replaced"

    assert store.delete(audio_id) is True
    assert store.delete(audio_id) is False
    assert not store.exists(audio_id)


def test_store_leaves_no_partial_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AudioStore(tmp_path)
    audio_id = str(uuid.uuid4())

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save(audio_id, b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "bad_id",
    [
        "../etc/passwd",
        "../../../../etc/passwd",
        "/etc/passwd",
        "550e8400-e29b-41d4-a716-446655440000/../../x",
        "550E8400-E29B-41D4-A716-446655440000",  # not canonical (upper case)
        "{550e8400-e29b-41d4-a716-446655440000}",
        "550e8400e29b41d4a716446655440000",
        "550e8400-e29b-41d4-a716-44665544000\n",
        "",
        "x" * 36,
    ],
)
def test_store_refuses_non_uuid_ids(tmp_path: Path, bad_id: str) -> None:
    store = AudioStore(tmp_path)
    with pytest.raises(InvalidAudioId):
        store.save(bad_id, b"data")
    for call in (store.path_for, store.exists, store.delete):
        with pytest.raises(InvalidAudioId):
            call(bad_id)
    assert list(tmp_path.iterdir()) == []


def test_store_accepts_uuid_objects(tmp_path: Path) -> None:
    audio_id = uuid.uuid4()
    assert AudioStore(tmp_path).path_for(audio_id).name == f"{audio_id}.wav"
