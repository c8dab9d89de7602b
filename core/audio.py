"""Uploaded messages: check, convert once to 8 kHz mono 16-bit PCM WAV, and store by id.

FreeSWITCH plays WAV at any rate but resamples on every call, so an upload is converted once here.
Uploads are hostile input: the size is capped while reading, the container is recognised from its
magic bytes before libsndfile parses anything (so only the WAV/AIFF/FLAC/OGG/MP3 parsers are ever
exposed), durations declared in headers are checked before decoding, and decoding runs in blocks
with a running duration limit, so memory and CPU stay bounded whatever the headers claim.
The duration kept in ``ConvertedAudio`` sizes the billing reservation of each call.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf  # type: ignore[import-untyped]
import soxr  # type: ignore[import-untyped]

__all__ = [
    "TARGET_SAMPLE_RATE",
    "AudioError",
    "AudioStore",
    "AudioTooLarge",
    "AudioTooLong",
    "AudioTooShort",
    "ConvertedAudio",
    "InvalidAudioId",
    "NotAudio",
    "UnsupportedAudio",
    "convert_upload",
]

TARGET_SAMPLE_RATE = 8000
MIN_SOURCE_RATE = 4000
MAX_SOURCE_RATE = 384_000
MAX_SOURCE_CHANNELS = 8
BLOCK_FRAMES = 32_768  # per decode step: at most 8 ch * 32768 * 4 B = 1 MiB of float32
_READ_CHUNK = 1 << 20
# libsndfile reports SF_COUNT_MAX frames when a header gives no length
_UNKNOWN_FRAMES = 1 << 62
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # the canonical 44-byte PCM header

# Formats libsndfile may report for the containers we let through.
_ALLOWED_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "AIFF", "FLAC", "OGG", "MP3"})


class AudioError(Exception):
    """An upload that cannot become a message. ``code`` is the API error code."""

    code: str = "AUDIO_ERROR"
    http_status: int = 422

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class _FixedCodeError(AudioError):
    """Subclasses carry their own API code: raise ``NotAudio("message", key=detail)``."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(type(self).code, message, details)


class AudioTooLarge(_FixedCodeError):
    code = "AUDIO_TOO_LARGE"
    http_status = 413


class NotAudio(_FixedCodeError):
    code = "NOT_AUDIO"


class UnsupportedAudio(_FixedCodeError):
    code = "UNSUPPORTED_AUDIO"


class AudioTooLong(_FixedCodeError):
    code = "AUDIO_TOO_LONG"


class AudioTooShort(_FixedCodeError):
    code = "AUDIO_TOO_SHORT"


class InvalidAudioId(ValueError):
    """An audio id that is not a canonical UUID string (it would not be safe as a file name)."""


@dataclass(frozen=True)
class ConvertedAudio:
    wav_bytes: bytes = field(repr=False)  # 8 kHz, mono, PCM_16, 44-byte RIFF header
    duration_ms: int
    source_format: str
    source_sample_rate: int
    source_channels: int
    sha256: str


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def convert_upload(
    data: bytes | bytearray | memoryview | _Readable,
    *,
    max_bytes: int,
    max_seconds: float,
    min_seconds: float = 0.2,
) -> ConvertedAudio:
    """Check an uploaded file and convert it to 8 kHz mono 16-bit PCM WAV.

    Raises ``AudioTooLarge``, ``NotAudio``, ``UnsupportedAudio``, ``AudioTooLong`` or
    ``AudioTooShort``; no decoder exception escapes.
    """
    if (
        max_bytes <= 0
        or max_seconds <= 0
        or min_seconds < 0
        or min_seconds > max_seconds
    ):
        raise ValueError("invalid limits")
    raw = _read_bounded(data, max_bytes)
    if not raw:
        raise NotAudio("The file is empty.")
    family = _sniff(raw)
    if family == "WAV":
        declared = _riff_declared_seconds(raw)
        if declared is not None and declared > max_seconds:
            raise _too_long(declared, max_seconds)
    try:
        return _decode(
            raw, max_seconds=max_seconds, min_seconds=min_seconds, family=family
        )
    except AudioError:
        raise
    # libsndfile, soundfile, soxr and numpy errors all mean "cannot decode this upload".
    except Exception as exc:  # noqa: BLE001
        raise NotAudio(
            "The file could not be decoded as audio.", reason=type(exc).__name__
        ) from None


def _decode(
    raw: bytes, *, max_seconds: float, min_seconds: float, family: str
) -> ConvertedAudio:
    with sf.SoundFile(io.BytesIO(raw)) as snd:
        source_format = str(snd.format)
        rate = int(snd.samplerate)
        channels = int(snd.channels)
        if source_format not in _ALLOWED_FORMATS:
            raise UnsupportedAudio(
                f"{source_format} files are not supported.", format=source_format
            )
        if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
            raise UnsupportedAudio(
                f"Unsupported sample rate {rate} Hz.", sample_rate=rate
            )
        if not 1 <= channels <= MAX_SOURCE_CHANNELS:
            raise UnsupportedAudio(
                f"Unsupported channel count {channels}.", channels=channels
            )
        # The header's frame count is checked before any decoding. For MP3 it is only an estimate
        # (from the bitrate and file size) so it is not trusted to reject; the running limit
        # below bounds MP3 and every lying header alike.
        frames = int(snd.frames)
        if family != "MP3":
            if frames >= _UNKNOWN_FRAMES:
                # e.g. a FLAC streamed without its sample count: libsndfile fails on the last
                # block of such files, so they cannot be converted faithfully.
                raise UnsupportedAudio(
                    f"This {source_format} file does not declare its length; export it again.",
                    format=source_format,
                )
            if frames / rate > max_seconds:
                raise _too_long(frames / rate, max_seconds)

        limit_frames = int(max_seconds * rate)
        stream = (
            soxr.ResampleStream(
                rate, TARGET_SAMPLE_RATE, 1, dtype="float32", quality="HQ"
            )
            if rate != TARGET_SAMPLE_RATE
            else None
        )
        buf = np.empty((BLOCK_FRAMES, channels), dtype=np.float32)
        chunks: list[bytes] = []
        decoded = 0
        while True:
            block = snd.read(out=buf)
            got = block.shape[0]
            if got == 0:
                break
            decoded += got
            if decoded > limit_frames:
                raise _too_long(decoded / rate, max_seconds, while_decoding=True)
            mono = (
                block.mean(axis=1, dtype=np.float32)
                if channels > 1
                else block[:, 0].copy()
            )
            np.nan_to_num(mono, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
            if stream is not None:
                mono = stream.resample_chunk(mono)
            chunks.append(_to_pcm16(mono))
        if stream is not None:
            chunks.append(
                _to_pcm16(
                    stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                )
            )

    if decoded == 0:
        raise NotAudio("The file contains no audio.")
    if decoded / rate < min_seconds:
        raise AudioTooShort(
            f"The message is too short ({decoded / rate:.2f} s, minimum {min_seconds:g} s).",
            duration_seconds=round(decoded / rate, 3),
            min_seconds=min_seconds,
        )
    data_len = sum(len(c) for c in chunks)
    header = _WAV_HEADER.pack(
        b"RIFF", 36 + data_len, b"WAVE", b"fmt ", 16, 1, 1,
        TARGET_SAMPLE_RATE, TARGET_SAMPLE_RATE * 2, 2, 16, b"data", data_len,
    )  # fmt: skip
    chunks.insert(0, header)
    wav = b"".join(chunks)
    del chunks
    samples = data_len // 2
    return ConvertedAudio(
        wav_bytes=wav,
        duration_ms=(samples * 1000 + TARGET_SAMPLE_RATE // 2) // TARGET_SAMPLE_RATE,
        source_format=source_format,
        source_sample_rate=rate,
        source_channels=channels,
        sha256=hashlib.sha256(wav).hexdigest(),
    )


def _to_pcm16(x: np.ndarray[Any, Any]) -> bytes:
    y = np.clip(x, -1.0, 1.0) * 32767.0
    pcm: bytes = np.rint(y).astype("<i2").tobytes()
    return pcm


def _too_long(
    seconds: float, max_seconds: float, *, while_decoding: bool = False
) -> AudioTooLong:
    shown = f"over {max_seconds:g} s" if while_decoding else f"{seconds:.1f} s"
    return AudioTooLong(
        f"The message is too long ({shown}, maximum {max_seconds:g} s).",
        duration_seconds=round(seconds, 3),
        max_seconds=max_seconds,
    )


def _read_bounded(
    data: bytes | bytearray | memoryview | _Readable, max_bytes: int
) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        size = data.nbytes if isinstance(data, memoryview) else len(data)
        if size > max_bytes:
            raise AudioTooLarge(
                f"The file is larger than {max_bytes} bytes.", max_bytes=max_bytes
            )
        return bytes(data)
    buf = bytearray()
    while True:
        chunk = data.read(min(_READ_CHUNK, max_bytes + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            raise AudioTooLarge(
                f"The file is larger than {max_bytes} bytes.", max_bytes=max_bytes
            )


def _sniff(raw: bytes) -> str:
    """Recognise the container from its magic bytes, before any decoder sees the data."""
    head = raw[:16]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3" or (
        len(head) >= 2
        and head[0] == 0xFF
        and head[1] & 0xE0 == 0xE0
        and head[1] & 0x06 != 0
    ):
        return "MP3"  # ID3 tag or an MPEG audio frame sync with a layer set
    unsupported = _known_unsupported(head)
    if unsupported is not None:
        raise UnsupportedAudio(
            f"{unsupported} files are not supported; upload WAV, MP3, OGG or FLAC.",
            format=unsupported,
        )
    raise NotAudio("The file is not a recognised audio file (WAV, MP3, OGG or FLAC).")


def _known_unsupported(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        return "MP4/M4A/3GP"
    if head[:5] == b"#!AMR":
        return "AMR"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "WebM/Matroska"
    if head[:8] == b"0&\xb2u\x8ef\xcf\x11":
        return "WMA/ASF"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "AAC"  # ADTS frame sync (layer bits zero)
    if head[:4] in (b".snd", b"caff", b"riff") or head[:4] == b"FORM":
        return "AU/CAF/W64/IFF"
    return None


def _riff_declared_seconds(raw: bytes) -> float | None:
    """Duration a RIFF/RIFX WAV header declares (its data chunk size), or None when unknown.

    libsndfile trims a data chunk that claims more than the file holds, so a lying header would
    otherwise go unnoticed; this reads the declaration itself. Compressed codecs pack several
    frames per block, so the figure can only be an underestimate for them, never a false alarm.
    """
    if raw[:4] not in (b"RIFF", b"RIFX"):
        return None  # RF64 keeps its sizes in ds64; libsndfile's frame count covers it
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


class AudioStore:
    """Converted messages on disk as ``<root>/<audio_id>.wav``, where FreeSWITCH reads them."""

    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.root = Path(root_dir)

    def path_for(self, audio_id: str | uuid.UUID) -> Path:
        return self.root / f"{_canonical_id(audio_id)}.wav"

    def save(self, audio_id: str | uuid.UUID, wav_bytes: bytes) -> Path:
        """Write atomically (temp file in the same directory, fsync, rename); mode 0644."""
        path = self.path_for(audio_id)
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=self.root, prefix=f".{path.stem}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(wav_bytes)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)
        return path

    def delete(self, audio_id: str | uuid.UUID) -> bool:
        """Remove the file; True if it existed."""
        try:
            self.path_for(audio_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, audio_id: str | uuid.UUID) -> bool:
        return self.path_for(audio_id).is_file()


def _canonical_id(audio_id: str | uuid.UUID) -> str:
    if isinstance(audio_id, uuid.UUID):
        return str(audio_id)
    if not isinstance(audio_id, str) or len(audio_id) != 36:
        raise InvalidAudioId("audio id must be a canonical UUID string")
    try:
        canonical = str(uuid.UUID(audio_id))
    except ValueError:
        raise InvalidAudioId("audio id must be a canonical UUID string") from None
    if canonical != audio_id:
        raise InvalidAudioId(
            "audio id must be a canonical (lower-case, hyphenated) UUID string"
        )
    return canonical


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
