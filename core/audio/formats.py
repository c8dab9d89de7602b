"""Which containers and codecs an upload may be, recognised from magic bytes before any parser runs.

``sniff`` names the one FFmpeg demuxer allowed to read the file and the decoders allowed for its
audio stream. FFmpeg never probes: the demuxer is chosen here, and the container is opened with
``format_whitelist`` (that demuxer only, so no nested demuxer such as concat, HLS, image or
subtitle readers can start), ``codec_whitelist`` (these decoders only, also while FFmpeg reads the
stream's parameters) and no I/O beyond the uploaded bytes (see ``decode.open_container``).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.audio.errors import NotAudio, UnsupportedAudio

ACCEPTED = "WAV, MP3, M4A/AAC, AMR, 3GP, WebM/Opus, OGG (Opus, Vorbis), FLAC or AIFF"

_PCM_LE = ("pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_u8", "pcm_f32le", "pcm_f64le")
_PCM_BE = ("pcm_s16be", "pcm_s24be", "pcm_s32be", "pcm_s8", "pcm_f32be", "pcm_f64be")
_G711 = ("pcm_mulaw", "pcm_alaw")
_MPEG = ("mp3float", "mp3", "mp2float", "mp2")


@dataclass(frozen=True)
class Container:
    """One accepted kind of file: the FFmpeg demuxer that may read it and what it may carry."""

    label: str  # shown to clients as source_format (with the codec when it is not implied)
    demuxer: str  # FFmpeg's full demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    decoders: tuple[str, ...]  # FFmpeg decoders allowed for the audio stream
    declares_length: bool  # its header states the length (not a bitrate estimate): checked before decoding
    demuxer_options: tuple[tuple[str, str], ...] = ()


WAV = Container("WAV", "wav", _PCM_LE + _PCM_BE + _G711 + ("adpcm_ima_wav", "adpcm_ms", "gsm_ms"), True)
AIFF = Container("AIFF", "aiff", _PCM_BE + _G711, True)
FLAC = Container("FLAC", "flac", ("flac",), True)
OGG = Container("OGG", "ogg", ("opus", "vorbis", "flac"), True)
MP3 = Container("MP3", "mp3", _MPEG, False)  # length estimated from the bitrate
AAC = Container("AAC", "aac", ("aac",), False)  # ADTS stream, as some Android recorders write
AMR = Container("AMR", "amr", ("amrnb", "amrwb"), False)  # length estimated from the file size
WEBM = Container("WebM", "matroska,webm", ("opus", "vorbis", "aac", "flac", "pcm_s16le", "pcm_f32le") + _MPEG, True)
# MP4/M4A/3GP/MOV: external data references (drefs) are never followed
MP4_DECODERS = ("aac", "alac", "amrnb", "amrwb", "opus", "flac") + _MPEG
MP4_OPTIONS = (("enable_drefs", "0"), ("use_absolute_path", "0"))


def _mp4(label: str) -> Container:
    return Container(label, "mov,mp4,m4a,3gp,3g2,mj2", MP4_DECODERS, True, MP4_OPTIONS)


def sniff(raw: bytes) -> Container:
    """Recognise the container from its magic bytes, before any decoder sees the data."""
    head = raw[:16]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return WAV
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    if head[:4] == b"fLaC":
        return FLAC
    if head[:4] == b"OggS":
        return OGG
    if head[4:8] == b"ftyp":
        return _mp4(_mp4_label(raw[8:12]))
    if head[:5] == b"#!AMR":
        if head[:6] == b"#!AMR\n" or head[:9] == b"#!AMR-WB\n":
            return AMR
        raise UnsupportedAudio("Multichannel AMR files are not supported.", format="AMR-MC")
    if head[:4] == b"\x1aE\xdf\xa3":
        return WEBM  # EBML: WebM or Matroska
    if head[:3] == b"ID3":
        return _after_id3(raw)
    if _is_adts(head):
        return AAC
    if _is_mpeg_audio(head):
        return MP3
    unsupported = _known_unsupported(head)
    if unsupported is not None:
        raise UnsupportedAudio(f"{unsupported} files are not supported; upload {ACCEPTED}.", format=unsupported)
    raise NotAudio(f"The file is not a recognised audio file ({ACCEPTED}).")


def _mp4_label(brand: bytes) -> str:
    if brand.startswith((b"3gp", b"3g2")):
        return "3GP"
    if brand.startswith(b"M4"):
        return "M4A"
    if brand == b"qt  ":
        return "MOV"
    return "MP4"


def _is_adts(head: bytes) -> bool:
    # 12-bit frame sync, layer bits 00 (MPEG audio has a layer set)
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def _is_mpeg_audio(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _after_id3(raw: bytes) -> Container:
    """An ID3v2 tag leads MP3 files, and some ADTS AAC files: look at what follows it."""
    if len(raw) >= 10:
        size = 0
        for byte in raw[6:10]:
            size = (size << 7) | (byte & 0x7F)  # synchsafe integer
        start = 10 + size + (10 if raw[5] & 0x10 else 0)
        if _is_adts(raw[start : start + 2]):
            return AAC
    return MP3


def _known_unsupported(head: bytes) -> str | None:
    if head[:8] == b"0&\xb2u\x8ef\xcf\x11":
        return "WMA/ASF"
    if head[:4] in (b".snd", b"caff", b"riff") or head[:4] == b"FORM":
        return "AU/CAF/W64/IFF"
    return None
