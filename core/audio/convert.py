"""Uploaded messages: check, then convert once to 8 kHz mono 16-bit PCM WAV.

FreeSWITCH plays WAV at any rate but resamples on every call, so an upload is converted once here.
Every format is demuxed and decoded by FFmpeg through PyAV; soxr resamples.

Uploads are hostile input, so, in this order:

1. the size is capped while reading (``max_bytes``);
2. the container is recognised from its magic bytes (``formats.sniff``), which picks the one demuxer
   and the decoders allowed for it; FFmpeg never probes, opens no other file or URL, and starts no
   nested demuxer;
3. the header is read and checked before any decoding: codec in the allowed list, sample rate and
   channels in range, the declared duration (where the container states one) within
   ``max_seconds``, and the decoded work it implies (sample rate x channels x seconds) within
   ``max_samples``;
4. decoding runs frame by frame with running limits on duration and decoded work, so a header that
   lies or states nothing changes nothing: memory and CPU stay bounded;
5. optionally, a ``Budget`` bounds what the caller may spend here (the web request): past it the
   conversion stops with ``ConversionDeferred`` and is finished by the worker.

The duration kept in ``ConvertedAudio`` sizes the billing reservation of each call.
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np
import soxr

from core.audio.errors import (
    AudioError,
    AudioTooComplex,
    AudioTooLarge,
    AudioTooLong,
    AudioTooShort,
    ConversionDeferred,
    NotAudio,
    UnsupportedAudio,
)
from core.audio.formats import AMR, WAV, Container, sniff

TARGET_SAMPLE_RATE = 8000
MIN_SOURCE_RATE = 4000
MAX_SOURCE_RATE = 384_000
MAX_SOURCE_CHANNELS = 8
# Decoded work allowed by default: 300 s of 48 kHz stereo (28.8 million samples)
DEFAULT_MAX_SAMPLES = 300 * 48_000 * 2
# Source samples decoded per millisecond of CPU by the slowest common decoder per sample
# (Opus at 48 kHz: ~26 ns per sample on the build machine, see bench/audio.py)
SAMPLES_PER_CPU_MS = 40_000
RESAMPLE_BLOCK = 32_768  # mono samples handed to soxr at once
_READ_CHUNK = 1 << 20
_MAX_STREAMS = 16
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # the canonical 44-byte PCM header

_CODEC_NAMES = {
    "aac": "AAC", "alac": "ALAC", "amrnb": "AMR-NB", "amrwb": "AMR-WB", "opus": "Opus", "vorbis": "Vorbis",
    "flac": "FLAC", "mp3float": "MP3", "mp3": "MP3", "mp2float": "MP2", "mp2": "MP2", "adpcm_ima_wav": "IMA-ADPCM",
    "adpcm_ms": "MS-ADPCM", "gsm_ms": "GSM", "pcm_mulaw": "G.711u", "pcm_alaw": "G.711a",
}  # fmt: skip


@dataclass(frozen=True)
class ConvertedAudio:
    wav_bytes: bytes = field(repr=False)  # 8 kHz, mono, PCM_16, 44-byte RIFF header
    duration_ms: int
    source_format: str  # e.g. "WAV", "MP3", "M4A/AAC", "WebM/Opus", "AMR-NB"
    source_sample_rate: int
    source_channels: int
    sha256: str


@dataclass(frozen=True)
class Budget:
    """What one conversion may spend where it runs: CPU seconds and decoded source samples.

    ``for_cpu_ms(100)`` is the web request's budget: the sample figure turns the CPU figure into a
    deterministic bound (``SAMPLES_PER_CPU_MS``), the CPU figure covers decoders slower than that.
    """

    cpu_seconds: float
    samples: int

    @classmethod
    def for_cpu_ms(cls, cpu_ms: float) -> Budget:
        return cls(cpu_seconds=cpu_ms / 1000, samples=int(cpu_ms * SAMPLES_PER_CPU_MS))


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def convert_upload(
    data: bytes | bytearray | memoryview | _Readable,
    *,
    max_bytes: int,
    max_seconds: float,
    min_seconds: float = 0.2,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    budget: Budget | None = None,
) -> ConvertedAudio:
    """Check an uploaded file and convert it to 8 kHz mono 16-bit PCM WAV.

    Raises ``AudioTooLarge``, ``NotAudio``, ``UnsupportedAudio``, ``AudioTooLong``,
    ``AudioTooComplex`` or ``AudioTooShort``; no decoder exception escapes. With a ``budget``, raises
    ``ConversionDeferred`` once the work would exceed it (after every header check passed).
    """
    if max_bytes <= 0 or max_seconds <= 0 or max_samples <= 0 or not 0 <= min_seconds <= max_seconds:
        raise ValueError("invalid limits")
    started = time.thread_time()
    raw = _read_bounded(data, max_bytes)
    if not raw:
        raise NotAudio("The file is empty.")
    container = sniff(raw)
    if container is WAV:
        declared = _riff_declared_seconds(raw)
        if declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds)
    limits = _Limits(max_seconds, min_seconds, max_samples, budget, started)
    try:
        return _decode(raw, container, limits)
    except (AudioError, ConversionDeferred):
        raise
    # FFmpeg, PyAV, soxr and numpy errors all mean "cannot decode this upload".
    except Exception as exc:  # noqa: BLE001
        raise NotAudio("The file could not be decoded as audio.", reason=type(exc).__name__) from None


@dataclass(frozen=True)
class _Limits:
    max_seconds: float
    min_seconds: float
    max_samples: int
    budget: Budget | None
    started: float  # thread CPU time at the start of the conversion


def _refuse_io(url: str, flags: int, options: dict[str, str]) -> Any:
    raise PermissionError(f"an upload may not open {url!r}")


@contextmanager
def open_container(raw: bytes, container: Container) -> Iterator[Any]:
    """The uploaded bytes opened with ``container``'s demuxer only, its decoders only, and no I/O
    beyond the bytes themselves (nested opens raise)."""
    options = {
        "format_whitelist": container.demuxer,
        "codec_whitelist": ",".join(container.decoders),
        "protocol_whitelist": "none",
        "max_streams": str(_MAX_STREAMS),
        # stream parameters from the first 64 KB / 0.5 s (FFmpeg's defaults read 5 MB / 5 s first)
        "probesize": "65536",
        "analyzeduration": "500000",
        **dict(container.demuxer_options),
    }
    fc = av.open(io.BytesIO(raw), mode="r", format=container.demuxer.split(",")[0],
                 container_options=options, io_open=_refuse_io)  # fmt: skip
    try:
        yield fc
    finally:
        fc.close()


def _decode(raw: bytes, container: Container, limits: _Limits) -> ConvertedAudio:
    with open_container(raw, container) as fc:
        if not fc.streams.audio:
            raise NotAudio("The file contains no audio.")
        stream = fc.streams.audio[0]
        ctx = stream.codec_context
        codec = str(ctx.name)
        source_format = _source_format(container, codec)
        if codec not in container.decoders:
            raise UnsupportedAudio(
                f"{container.label} files with {codec} audio are not supported.", format=container.label, codec=codec
            )
        rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        if rate == 0 or channels == 0:
            raise NotAudio("The file's audio parameters could not be read.")
        _check_shape(rate, channels)
        if container.declares_length:
            declared = _declared_seconds(fc, stream)
            if declared is not None:
                if declared > limits.max_seconds:
                    raise _too_long(declared, limits.max_seconds)
                _check_work(rate, channels, declared, limits.max_samples)
                if limits.budget is not None and rate * channels * declared > limits.budget.samples:
                    raise ConversionDeferred(source_format, "declared work above the request's budget")
        ctx.thread_count = 1
        pcm, decoded, rate, channels = _decode_frames(fc, stream, source_format, limits)

    if decoded == 0:
        raise NotAudio("The file contains no audio.")
    if decoded / rate < limits.min_seconds:
        raise AudioTooShort(
            f"The message is too short ({decoded / rate:.2f} s, minimum {limits.min_seconds:g} s).",
            duration_seconds=round(decoded / rate, 3),
            min_seconds=limits.min_seconds,
        )
    data_len = sum(len(c) for c in pcm)
    header = _WAV_HEADER.pack(
        b"RIFF", 36 + data_len, b"WAVE", b"fmt ", 16, 1, 1,
        TARGET_SAMPLE_RATE, TARGET_SAMPLE_RATE * 2, 2, 16, b"data", data_len,
    )  # fmt: skip
    pcm.insert(0, header)
    wav = b"".join(pcm)
    del pcm
    samples = data_len // 2
    return ConvertedAudio(
        wav_bytes=wav,
        duration_ms=(samples * 1000 + TARGET_SAMPLE_RATE // 2) // TARGET_SAMPLE_RATE,
        source_format=source_format,
        source_sample_rate=rate,
        source_channels=channels,
        sha256=hashlib.sha256(wav).hexdigest(),
    )


def _decode_frames(fc: Any, stream: Any, source_format: str, limits: _Limits) -> tuple[list[bytes], int, int, int]:
    """Decode, downmix (mean of the channels), resample to 8 kHz and quantise, frame by frame.

    Returns (PCM chunks, source frames decoded, source rate, source channels). The source rate is
    the decoder's (HE-AAC doubles its container's), so the resampler starts at the first frame.
    """
    converter = av.AudioResampler(format="flt")  # for the frames _downmix cannot read directly
    resampler: Any = None
    rate = channels = 0
    limit_frames = 0
    decoded = work = 0
    pending: list[np.ndarray[Any, Any]] = []
    pending_len = 0
    out: list[bytes] = []
    budget = limits.budget

    def flush(last: bool = False) -> None:
        nonlocal pending, pending_len
        mono = np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)
        pending, pending_len = [], 0
        np.nan_to_num(mono, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        if resampler is not None:
            mono = resampler.resample_chunk(mono, last=last)
        if mono.size:
            out.append(_to_pcm16(mono))

    for frame in fc.decode(stream):
        if not rate:
            rate, channels = int(frame.sample_rate), int(frame.layout.nb_channels)
            _check_shape(rate, channels)
            limit_frames = int(limits.max_seconds * rate)
            if rate != TARGET_SAMPLE_RATE:
                resampler = soxr.ResampleStream(rate, TARGET_SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        elif frame.sample_rate != rate or frame.layout.nb_channels != channels:
            raise UnsupportedAudio("The audio changes its sample rate or channels midway; export it again.")
        decoded += frame.samples
        work += frame.samples * channels
        if decoded > limit_frames:
            raise _too_long(decoded / rate, limits.max_seconds, while_decoding=True)
        if work > limits.max_samples:
            _check_work(rate, channels, decoded / rate, limits.max_samples, while_decoding=True)
        if budget is not None and (
            work > budget.samples or time.thread_time() - limits.started > budget.cpu_seconds
        ):
            raise ConversionDeferred(source_format, "decoding needs more than the request's budget")
        for mono in _downmix(frame, channels, converter):
            pending.append(mono)
            pending_len += mono.size
        if pending_len >= RESAMPLE_BLOCK:
            flush()
    if rate:
        pending += _downmix(None, channels, converter)
        flush(last=True)
    return out, decoded, rate, channels


def _downmix(frame: Any, channels: int, converter: Any) -> list[np.ndarray[Any, Any]]:
    """A decoded frame as mono float32 (the mean of its channels); ``None`` flushes the converter.

    Frames in the common sample formats are read directly. The others, and planar frames with 8 or
    more channels (PyAV's planar view of those reads past FFmpeg's plane pointers: a crash), are
    converted to packed float32 by FFmpeg first.
    """
    fmt = frame.format.name if frame is not None else ""
    scale = _SCALE.get(fmt)
    if scale is None or (frame.format.is_planar and channels >= 8):
        return [_mean(f.to_ndarray().reshape(-1, channels), 1.0) for f in converter.resample(frame)]
    data = frame.to_ndarray()  # planar: (channels, samples); packed: (1, samples * channels)
    return [_mean(data.T if frame.format.is_planar else data.reshape(-1, channels), scale)]


# sample formats read directly, with the factor that brings them to [-1, 1]
_SCALE = {"flt": 1.0, "fltp": 1.0, "dbl": 1.0, "dblp": 1.0, "s16": 2.0**-15, "s16p": 2.0**-15, "s32": 2.0**-31,
          "s32p": 2.0**-31}


def _mean(block: np.ndarray[Any, Any], scale: float) -> np.ndarray[Any, Any]:
    if block.shape[1] == 1:
        mono = block[:, 0].astype(np.float32)
    else:
        mono = block.mean(axis=1, dtype=np.float32 if block.dtype == np.float32 else np.float64).astype(np.float32)
    if scale != 1.0:
        mono *= np.float32(scale)
    return mono


def _check_shape(rate: int, channels: int) -> None:
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise UnsupportedAudio(f"Unsupported sample rate {rate} Hz.", sample_rate=rate)
    if not 1 <= channels <= MAX_SOURCE_CHANNELS:
        raise UnsupportedAudio(f"Unsupported channel count {channels}.", channels=channels)


def _check_work(rate: int, channels: int, seconds: float, max_samples: int, *, while_decoding: bool = False) -> None:
    samples = rate * channels * seconds
    if samples <= max_samples:
        return
    shown = f"over {max_samples / 1e6:.1f} million" if while_decoding else f"{samples / 1e6:.1f} million"
    raise AudioTooComplex(
        f"The file holds too much audio data to convert: {rate} Hz x {channels} channels x {seconds:.1f} s is "
        f"{shown} samples; the limit (max_samples) is {max_samples / 1e6:.1f} million, e.g. "
        f"{max_samples / 96_000:.0f} s of 48 kHz stereo. Export it in mono, at 48 kHz or less.",
        limit="max_samples",
        max_samples=max_samples,
        samples=int(samples),
        sample_rate=rate,
        channels=channels,
        duration_seconds=round(seconds, 3),
    )


def _declared_seconds(fc: Any, stream: Any) -> float | None:
    """The length the container's header states, or None when it states none."""
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if fc.duration is not None and fc.duration > 0:
        return float(fc.duration) / 1_000_000  # AV_TIME_BASE
    return None


def _source_format(container: Container, codec: str) -> str:
    name = _CODEC_NAMES.get(codec, "PCM" if codec.startswith("pcm_") else codec.upper())
    if container is AMR:
        return name
    if name in ("PCM", container.label) or (container.label == "MP3" and name == "MP3"):
        return container.label
    return f"{container.label}/{name}"


def _to_pcm16(x: np.ndarray[Any, Any]) -> bytes:
    y = np.clip(x, -1.0, 1.0) * 32767.0
    pcm: bytes = np.rint(y).astype("<i2").tobytes()
    return pcm


def _too_long(seconds: float, max_seconds: float, *, while_decoding: bool = False) -> AudioTooLong:
    shown = f"over {max_seconds:g} s" if while_decoding else f"{seconds:.1f} s"
    return AudioTooLong(
        f"The message is too long ({shown}, maximum {max_seconds:g} s).",
        duration_seconds=round(seconds, 3),
        max_seconds=max_seconds,
    )


def _read_bounded(data: bytes | bytearray | memoryview | _Readable, max_bytes: int) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > max_bytes:
            raise AudioTooLarge(f"The file is larger than {max_bytes} bytes.", max_bytes=max_bytes)
        return bytes(data)
    buf = bytearray()
    while True:
        chunk = data.read(min(_READ_CHUNK, max_bytes + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            raise AudioTooLarge(f"The file is larger than {max_bytes} bytes.", max_bytes=max_bytes)


def _riff_declared_seconds(raw: bytes) -> float | None:
    """Duration a RIFF/RIFX WAV header declares (its data chunk size), or None when unknown.

    A demuxer trims a data chunk that claims more than the file holds, so a lying header would
    otherwise go unnoticed; this reads the declaration itself. Compressed codecs pack several
    frames per block, so the figure can only be an underestimate for them, never a false alarm.
    """
    if raw[:4] not in (b"RIFF", b"RIFX"):
        return None  # RF64 keeps its sizes in ds64; the demuxer's duration covers it
    endian = "<" if raw[:4] == b"RIFF" else ">"
    pos, end = 12, min(len(raw), 1 << 20)
    rate = block_align = 0
    for _ in range(64):  # a real header has a handful of chunks before "data"
        if pos + 8 > end:
            return None
        chunk_id = raw[pos : pos + 4]
        (size,) = struct.unpack_from(endian + "I", raw, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(raw):
            _, _, rate, _, block_align = struct.unpack_from(endian + "HHIIH", raw, body)
        elif chunk_id == b"data":
            if size in (0, 0xFFFFFFFF) or rate == 0 or block_align == 0:
                return None  # streaming writers leave the size unset
            return float(size) / block_align / rate
        pos = body + size + (size & 1)
    return None

