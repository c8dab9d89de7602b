"""Upload conversion to 8 kHz mono PCM_16 WAV: every accepted kind made for real, hostile inputs,
the decoded-work cap, the request budget, and the on-disk store."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tracemalloc
import uuid
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf  # type: ignore[import-untyped]

from core.audio import (
    AudioError,
    AudioStore,
    AudioTooComplex,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    Budget,
    ConversionDeferred,
    ConvertedAudio,
    InvalidAudioId,
    NotAudio,
    PendingUploads,
    UnsupportedAudio,
    convert_upload,
)
from tests.unit.audio_samples import ALL_KINDS, encode_av, encode_sf, sample, tone

MB = 1 << 20
LIMITS = {"max_bytes": 20 * MB, "max_seconds": 120.0}


def encode(x: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    return encode_sf(x, rate, fmt, subtype)


def wav16(seconds: float, rate: int = 8000) -> bytes:
    return encode(tone(rate, seconds), rate, "WAV", "PCM_16")


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def check_canonical(out: ConvertedAudio) -> np.ndarray:
    """The output is a canonical 8 kHz mono PCM_16 WAV (44-byte header); returns its samples."""
    info = sf.info(io.BytesIO(out.wav_bytes))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 8000, 1)
    assert len(out.wav_bytes) == 44 + info.frames * 2  # canonical header, nothing else
    assert out.wav_bytes[:4] == b"RIFF" and out.wav_bytes[36:40] == b"data"
    assert abs(info.frames / 8000 * 1000 - out.duration_ms) <= 1
    assert out.sha256 == hashlib.sha256(out.wav_bytes).hexdigest()
    samples, _ = sf.read(io.BytesIO(out.wav_bytes), dtype="float32")
    return samples


# kind -> (source_format, source rate) of a 1.5 s mono tone made by tests/unit/audio_samples.py
EXPECTED = {
    "WAV": ("WAV", 44100), "MP3": ("MP3", 44100), "OGG/Vorbis": ("OGG/Vorbis", 48000), "FLAC": ("FLAC", 22050),
    "AIFF": ("AIFF", 44100), "M4A/AAC": ("M4A/AAC", 48000), "MP4/AAC": ("MP4/AAC", 44100),
    "3GP/AAC": ("3GP/AAC", 16000), "AAC": ("AAC", 44100), "3GP/AMR-NB": ("3GP/AMR-NB", 8000),
    "AMR-NB": ("AMR-NB", 8000), "WebM/Opus": ("WebM/Opus", 48000), "OGG/Opus": ("OGG/Opus", 48000),
    "AMR-WB": ("AMR-WB", 16000), "3GP/AMR-WB": ("3GP/AMR-WB", 16000),
}  # fmt: skip


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_accepted_kind_converts_to_8k_mono_pcm16(kind: str) -> None:
    data = sample(kind, 1.5)
    out = convert_upload(data, **LIMITS)

    samples = check_canonical(out)
    assert (out.source_format, out.source_sample_rate, out.source_channels) == (*EXPECTED[kind], 1)
    # codecs add priming and padding (AAC ~23 ms each side); AMR counts whole 20 ms frames
    assert abs(out.duration_ms - 1500) <= 50, out.duration_ms
    if kind.endswith("AMR-WB"):  # random speech bits (no AMR-WB encoder exists here): noise, not silence
        assert float(np.sqrt(np.mean(samples**2))) > 0.001
        return
    steady = samples[800:-800]
    assert abs(peak_hz(steady, 8000) - 440) < 10
    if "AMR" not in kind:  # a speech codec reshapes a pure tone's level
        # level kept (the 0.5 tone), no clipping; percentiles, as lossy encoders leave a few overshoots
        assert 0.4 < float(np.percentile(np.abs(steady), 99)) <= 0.6
        assert float(np.max(np.abs(steady))) < 0.95


@pytest.mark.parametrize(("fmt", "subtype", "rate", "channels"), [
    ("WAV", "PCM_24", 48000, 2), ("WAV", "FLOAT", 16000, 1), ("WAV", "ULAW", 8000, 1), ("WAV", "IMA_ADPCM", 8000, 1),
    ("OGG", "VORBIS", 48000, 8),  # 8 planar channels: PyAV's plane view of such frames would crash
    ("FLAC", "PCM_24", 96000, 6),
])  # fmt: skip
def test_more_codecs_rates_and_channels(fmt: str, subtype: str, rate: int, channels: int) -> None:
    out = convert_upload(encode(tone(rate, 1.0, channels), rate, fmt, subtype), **LIMITS)
    samples = check_canonical(out)
    assert (out.source_sample_rate, out.source_channels) == (rate, channels)
    assert abs(out.duration_ms - 1000) <= 20
    assert abs(peak_hz(samples[400:-400], 8000) - 440) < 10


def test_m4a_stereo_and_a_file_object() -> None:
    data = encode_av(tone(44100, 2.0, 2), 44100, "ipod", "aac")
    out = convert_upload(io.BytesIO(data), **LIMITS)
    assert (out.source_format, out.source_channels) == ("M4A/AAC", 2)
    assert abs(out.duration_ms - 2000) <= 40


def test_downmix_is_the_mean_of_the_channels() -> None:
    left = tone(44100, 1.0, 1, 300.0)[:, 0]
    right = tone(44100, 1.0, 1, 1000.0)[:, 0]
    data = encode(np.stack([left, right], axis=1), 44100, "WAV", "PCM_16")
    samples = check_canonical(convert_upload(data, **LIMITS))
    spectrum = np.abs(np.fft.rfft(samples))
    bins = {f: spectrum[round(f * len(samples) / 8000)] for f in (300, 1000)}
    assert bins[300] == pytest.approx(bins[1000], rel=0.1)  # both channels present, with equal weight


def test_high_frequencies_are_filtered_not_aliased() -> None:
    data = encode(tone(44100, 1.0, 1, 6000.0), 44100, "WAV", "PCM_16")
    samples, _ = sf.read(io.BytesIO(convert_upload(data, **LIMITS).wav_bytes), dtype="float32")
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
    data = sample("M4A/AAC", 1.0)
    assert convert_upload(data, **LIMITS) == convert_upload(bytearray(data), **LIMITS)


# --- only the demuxers and decoders we allow ------------------------------------------------------


def _mkv_with_video_and_opus() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        video = out.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = out.add_stream("libopus", rate=48000, layout="mono")
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        sound = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone(48000, 1.0).T), format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 48000, 0
        for stream, frame in ((audio, sound), (audio, None), (video, None)):
            for packet in stream.encode(frame):
                out.mux(packet)
    return buf.getvalue()


def test_no_decoder_outside_the_list_runs_not_even_while_reading_parameters() -> None:
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            out = convert_upload(_mkv_with_video_and_opus(), **LIMITS)
    finally:
        av.logging.set_level(None)
    assert (out.source_format, out.duration_ms) == ("WebM/Opus", 1000)  # the audio track only
    # FFmpeg wanted to open the video decoder to read the stream's parameters; the list refused it
    assert any("mpeg4" in message and "not on whitelist" in message for _, _, message in logs), logs


def test_a_codec_the_container_may_not_carry_is_refused() -> None:
    mov_pcm = encode_av(tone(16000, 1.0), 16000, "mov", "pcm_s16le")
    with pytest.raises(UnsupportedAudio) as info:
        convert_upload(mov_pcm, **LIMITS)
    assert info.value.details == {"format": "MOV", "codec": "pcm_s16le"}


@pytest.mark.parametrize("data", [
    b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    b"ffconcat version 1.0\nfile '/etc/passwd'\n",
    b'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><BaseURL>file:///etc/passwd</BaseURL></MPD>',
    b"1\n00:00:01,000 --> 00:00:02,000\nhello\n",
    b"WEBVTT\n\n00:01.000 --> 00:02.000\nhello\n",
    b"\x89PNG\r\n\x1a\n" + bytes(200),
    b"\x00\x00\x01\xba" + bytes(200),  # MPEG program stream
    b"G" + bytes(187) + b"G" + bytes(187),  # MPEG transport stream
], ids=["hls", "concat", "dash", "srt", "webvtt", "png", "mpeg-ps", "mpeg-ts"])  # fmt: skip
def test_playlists_subtitles_images_and_other_containers_reach_no_demuxer(data: bytes) -> None:
    with pytest.raises(NotAudio):
        convert_upload(data, **LIMITS)


# --- rejections -------------------------------------------------------------------------------


def _random_bytes() -> bytes:
    return np.random.default_rng(3).bytes(4096)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"", NotAudio, id="empty"),
        pytest.param(_random_bytes(), NotAudio, id="random-bytes"),
        pytest.param(b"\xff\xfb\x90\x00" + _random_bytes(), AudioError, id="random-after-mp3-sync"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(200), NotAudio, id="jpeg"),
        pytest.param(b"phone\n03001234567\n" * 50, NotAudio, id="text"),
        pytest.param(b"%PDF-1.7\n" + bytes(300), NotAudio, id="pdf"),
        pytest.param(wav16(1.0)[:30], NotAudio, id="truncated-wav"),
        pytest.param(wav16(1.0)[:44], NotAudio, id="wav-header-only"),
        pytest.param(b"RIFF\x24\x00\x00\x00WAVEfmt ", NotAudio, id="wav-cut-in-fmt"),
        pytest.param(b"OggS" + bytes(500), NotAudio, id="fake-ogg"),
        pytest.param(b"fLaC" + b"\x01" * 100, NotAudio, id="fake-flac"),
        pytest.param(b"ID3" + bytes(1000), NotAudio, id="id3-no-frames"),
        pytest.param(b"\x00\x00\x00\x20ftypM4A " + bytes(100), NotAudio, id="m4a-without-boxes"),
        pytest.param(b"#!AMR\n" + bytes(3), NotAudio, id="amr-without-frames"),
        pytest.param(b"#!AMR_MC1.0\n" + bytes(100), UnsupportedAudio, id="amr-multichannel"),
        pytest.param(b"\x1aE\xdf\xa3" + bytes(100), NotAudio, id="fake-webm"),
        pytest.param(b"0&\xb2u\x8ef\xcf\x11" + bytes(100), UnsupportedAudio, id="wma"),
        pytest.param(encode(tone(8000, 1.0), 8000, "AU", "PCM_16"), UnsupportedAudio, id="au"),
        pytest.param(sample("M4A/AAC", 1.0)[:2000], NotAudio, id="m4a-cut"),
    ],
)
def test_rejects_non_audio(data: bytes, error: type[AudioError]) -> None:
    with pytest.raises(error) as info:
        convert_upload(data, **LIMITS)
    assert info.value.code
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
    assert convert_upload(wav16(0.5), max_bytes=MB, max_seconds=60, min_seconds=0.5).duration_ms == 500


@pytest.mark.parametrize("kind", ["M4A/AAC", "OGG/Opus", "WebM/Opus", "3GP/AMR-NB"])
def test_declared_lengths_of_the_new_containers_are_checked_before_decoding(kind: str) -> None:
    with pytest.raises(AudioTooLong) as info:
        convert_upload(sample(kind, 3.0), max_bytes=MB, max_seconds=2.0)
    assert "over" not in info.value.message  # the header's figure, not a running count
    assert info.value.details["duration_seconds"] == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("kind", ["AMR-NB", "AAC", "MP3"])
def test_lengths_estimated_from_the_bitrate_are_enforced_while_decoding(kind: str) -> None:
    with pytest.raises(AudioTooLong) as info:
        convert_upload(sample(kind, 3.0), max_bytes=MB, max_seconds=1.0)
    assert "over" in info.value.message  # stopped mid-decode, not from the estimate


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
    flac = encode(np.zeros((8000, 1), dtype=np.float32), 8000, "FLAC", "PCM_16")
    with pytest.raises(AudioTooLong):
        convert_upload(_flac_with_declared_samples(flac, 10 * 3600 * 8000), max_bytes=MB, max_seconds=300)


def test_flac_without_declared_length_converts_and_is_bounded_while_decoding() -> None:
    flac = encode(tone(8000, 3.0), 8000, "FLAC", "PCM_16")
    assert convert_upload(_flac_with_declared_samples(flac, 0), max_bytes=MB, max_seconds=300).duration_ms == 3000
    with pytest.raises(AudioTooLong) as info:
        convert_upload(_flac_with_declared_samples(flac, 0), max_bytes=MB, max_seconds=2.0)
    assert "over" in info.value.message


def test_silent_compression_bomb_is_stopped_by_the_duration_limit() -> None:
    # Six minutes of silence compress to a few kB of FLAC; the limit stops it, whatever the size.
    bomb = encode(np.zeros((48000 * 360, 1), dtype=np.float32), 48000, "FLAC", "PCM_16")
    assert len(bomb) < 100_000
    with pytest.raises(AudioTooLong):
        convert_upload(bomb, max_bytes=MB, max_seconds=60)


@pytest.mark.parametrize(("rate", "channels"), [(1000, 1), (500_000, 1), (8000, 32)])
def test_absurd_headers_are_unsupported(rate: int, channels: int) -> None:
    data = bytearray(wav16(1.0))
    block_align = 2 * channels
    struct.pack_into("<HHIIH", data, 20, 1, channels, rate, rate * block_align, block_align)
    with pytest.raises(UnsupportedAudio):
        convert_upload(bytes(data), max_bytes=MB, max_seconds=300)


# --- decoded work: sample rate x channels x seconds ---------------------------------------------


def _heavy_flac(seconds: float = 3.0) -> bytes:
    """192 kHz, 8 channels of silence: 4.6 million samples in a few kB."""
    return encode(np.zeros((int(192_000 * seconds), 8), dtype=np.float32), 192_000, "FLAC", "PCM_16")


def test_work_declared_by_the_header_is_capped_before_decoding() -> None:
    heavy = _heavy_flac()
    with pytest.raises(AudioTooComplex) as info:
        convert_upload(heavy, max_bytes=MB, max_seconds=300, max_samples=2_000_000)
    error = info.value
    assert (error.code, error.http_status) == ("AUDIO_TOO_COMPLEX", 422)
    assert error.details == {"limit": "max_samples", "max_samples": 2_000_000, "samples": 4_608_000,
                             "sample_rate": 192_000, "channels": 8, "duration_seconds": 3.0}
    assert "max_samples" in error.message and "192000 Hz x 8 channels x 3.0 s" in error.message
    # the same file within the cap converts
    assert convert_upload(heavy, max_bytes=MB, max_seconds=300, max_samples=5_000_000).duration_ms == 3000


def test_work_of_a_header_that_states_no_length_is_capped_while_decoding() -> None:
    lying = _flac_with_declared_samples(_heavy_flac(), 0)
    with pytest.raises(AudioTooComplex) as info:
        convert_upload(lying, max_bytes=MB, max_seconds=300, max_samples=2_000_000)
    assert "over 2.0 million" in info.value.message
    assert info.value.details["samples"] <= 2_000_000 + 8 * 4608  # stopped within one FLAC block


def test_default_cap_refuses_the_worst_cases_and_keeps_five_minutes_of_48k_stereo() -> None:
    heavy = encode(np.zeros((384_000, 8), dtype=np.float32), 384_000, "FLAC", "PCM_16")
    claims_299_s = _flac_with_declared_samples(heavy, 384_000 * 299)  # as the 1 MB upload of the report
    with pytest.raises(AudioTooComplex) as info:
        convert_upload(claims_299_s, max_bytes=20 * MB, max_seconds=300)
    assert info.value.details["samples"] == 384_000 * 8 * 299
    # five minutes of 48 kHz stereo pass every header cap (this file is cut short: 1 s of it is there)
    five_minutes = _flac_with_declared_samples(
        encode(np.zeros((48_000, 2), dtype=np.float32), 48_000, "FLAC", "PCM_16"), 48_000 * 300)
    assert convert_upload(five_minutes, max_bytes=20 * MB, max_seconds=300).duration_ms == 1000


# --- the request's budget -------------------------------------------------------------------------


def test_a_small_upload_fits_the_request_budget() -> None:
    out = convert_upload(sample("M4A/AAC", 2.0), **LIMITS, budget=Budget.for_cpu_ms(100))
    assert abs(out.duration_ms - 2000) <= 40


def test_declared_work_above_the_budget_is_deferred_before_decoding() -> None:
    budget = Budget(cpu_seconds=10.0, samples=100_000)  # 2.1 s of 48 kHz mono
    with pytest.raises(ConversionDeferred) as info:
        convert_upload(sample("OGG/Opus", 3.0), **LIMITS, budget=budget)
    assert info.value.source_format == "OGG/Opus"
    assert "declared" in info.value.reason


def test_unknown_length_is_deferred_once_decoding_passes_the_budget() -> None:
    lying = _flac_with_declared_samples(encode(tone(48_000, 3.0), 48_000, "FLAC", "PCM_16"), 0)
    with pytest.raises(ConversionDeferred) as info:
        convert_upload(lying, **LIMITS, budget=Budget(cpu_seconds=10.0, samples=100_000))
    assert "decoding" in info.value.reason
    with pytest.raises(ConversionDeferred):  # no CPU left: deferred at the first frame
        convert_upload(lying, **LIMITS, budget=Budget(cpu_seconds=0.0, samples=10**9))


def test_header_errors_are_answered_in_the_request_whatever_the_budget() -> None:
    for data, max_seconds, error in ((wav16(3.0), 2.0, AudioTooLong), (_heavy_flac(), 300, AudioTooComplex)):
        with pytest.raises(error):
            convert_upload(data, max_bytes=MB, max_seconds=max_seconds, max_samples=2_000_000,
                           budget=Budget.for_cpu_ms(0))


def test_ten_minutes_of_48k_stereo_decode_in_bounded_memory() -> None:
    # 440 Hz repeats exactly every 10 s, so the blocks join seamlessly
    block = tone(48000, 10.0, 2, amp=0.1)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", 48000, 2, format="FLAC", subtype="PCM_16") as snd:
        for _ in range(60):
            snd.write(block)
    flac = buf.getvalue()
    tracemalloc.start()
    try:
        out = convert_upload(flac, max_bytes=50 * MB, max_seconds=600, max_samples=600 * 96_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.duration_ms == 600_000
    # The output itself is 9.6 MB; the decoded source (230 MB as float32) is never held at once.
    assert peak < 40 * MB


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match="limits"):
        convert_upload(wav16(1.0), max_bytes=0, max_seconds=10)
    with pytest.raises(ValueError, match="limits"):
        convert_upload(wav16(1.0), max_bytes=MB, max_seconds=10, max_samples=0)


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


def test_pending_uploads_are_private_and_named_by_id(tmp_path: Path) -> None:
    pending = PendingUploads(tmp_path / "uploads")
    audio_id = str(uuid.uuid4())
    assert pending.read(audio_id) is None
    path = pending.save(audio_id, b"upload bytes")
    assert path.name == f"audio-{audio_id}.upload"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pending.read(audio_id) == b"upload bytes"
    assert pending.delete(audio_id) is True and pending.delete(audio_id) is False
    with pytest.raises(InvalidAudioId):
        pending.save("../x", b"data")
