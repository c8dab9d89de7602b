"""Real audio files of every accepted kind, made here (no fixtures in the repository).

PyAV's FFmpeg encodes AAC (M4A, 3GP, ADTS), Opus (WebM, Ogg), AMR-NB (AMR, 3GP) and MP3;
libsndfile (soundfile) writes WAV, FLAC, Ogg Vorbis and AIFF. No encoder for AMR-WB exists in
either (nor in Debian's ffmpeg or sox), so ``amr_wb`` writes the RFC 4867 storage format itself:
valid frame headers with seeded random speech bits, which the AMR-WB decoder plays as noise of
exactly the stated length. ``three_gp_amr_wb`` muxes those frames into 3GP with PyAV.
"""

from __future__ import annotations

import io
import random

import av
import numpy as np
import soundfile as sf


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """A sine tone as float32 (frames, channels)."""
    t = np.arange(round(rate * seconds)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def encode_sf(x: np.ndarray, rate: int, fmt: str, subtype: str, block: int = 1 << 16) -> bytes:
    """WAV / FLAC / OGG (Vorbis, Opus) / AIFF / MP3 with libsndfile, written in blocks
    (libsndfile 1.2 crashes writing minutes of Vorbis in one call)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, x.shape[1], format=fmt, subtype=subtype) as snd:
        for start in range(0, len(x), block):
            snd.write(x[start : start + block])
    return buf.getvalue()


def encode_av(x: np.ndarray, rate: int, container: str, codec: str, *, bit_rate: int | None = None,
              out_rate: int | None = None) -> bytes:
    """Encode with PyAV's FFmpeg: e.g. ("ipod", "aac") for M4A, ("webm", "libopus"), ("ogg", "libopus"),
    ("3gp", "libopencore_amrnb") at 8 kHz mono, ("amr", "libopencore_amrnb"), ("adts", "aac")."""
    channels = x.shape[1]
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate or rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        step = stream.codec_context.frame_size or 1024  # the encoder's own frame size
        for start in range(0, len(x), step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[start : start + step].T), format="fltp",
                                               layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# AMR-WB frame sizes in bytes without the one-byte header, by frame type (RFC 4867, 3GPP TS 26.201)
AMR_WB_PAYLOAD = {0: 17, 1: 23, 2: 32, 3: 36, 4: 40, 5: 46, 6: 50, 7: 58, 8: 60}


def amr_wb(seconds: float, mode: int = 2, seed: int = 1) -> bytes:
    """An AMR-WB file (16 kHz, 20 ms frames) in the RFC 4867 storage format."""
    rng = random.Random(seed)
    header = bytes([(mode << 3) | 0x04])  # frame type, quality bit set
    frames = [header + rng.randbytes(AMR_WB_PAYLOAD[mode]) for _ in range(round(seconds * 50))]
    return b"#!AMR-WB\n" + b"".join(frames)


def remux(data: bytes, in_format: str, out_format: str) -> bytes:
    """Copy the packets of a file into another container, without re-encoding."""
    buf = io.BytesIO()
    with av.open(io.BytesIO(data), format=in_format) as src, av.open(buf, "w", format=out_format) as dst:
        stream = src.streams.audio[0]
        out_stream = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            dst.mux(packet)
    return buf.getvalue()


def three_gp_amr_wb(seconds: float) -> bytes:
    return remux(amr_wb(seconds), "amr", "3gp")


def sample(kind: str, seconds: float = 1.5, *, rate: int | None = None, channels: int = 1,
           freq: float = 440.0) -> bytes:
    """A real file of one accepted kind holding a tone (AMR-WB: noise, see the module's note)."""
    if kind == "AMR-WB":
        return amr_wb(seconds)
    if kind == "3GP/AMR-WB":
        return three_gp_amr_wb(seconds)
    fmt, codec, default_rate = KINDS[kind]
    r = rate or default_rate
    x = tone(r, seconds, channels, freq)
    if fmt in ("WAV", "FLAC", "OGG", "AIFF", "MP3"):
        return encode_sf(x, r, fmt, codec)
    return encode_av(x, r, fmt, codec)


# kind -> (writer's format, codec / subtype, default rate)
KINDS = {
    "WAV": ("WAV", "PCM_16", 44100),
    "MP3": ("MP3", "MPEG_LAYER_III", 44100),
    "OGG/Vorbis": ("OGG", "VORBIS", 48000),
    "FLAC": ("FLAC", "PCM_16", 22050),
    "AIFF": ("AIFF", "PCM_16", 44100),
    "M4A/AAC": ("ipod", "aac", 48000),  # iPhone Voice Memos, most Android recorders
    "MP4/AAC": ("mp4", "aac", 44100),  # Safari's MediaRecorder
    "3GP/AAC": ("3gp", "aac", 16000),
    "AAC": ("adts", "aac", 44100),  # raw ADTS, as some Android recorders write .aac
    "3GP/AMR-NB": ("3gp", "libopencore_amrnb", 8000),
    "AMR-NB": ("amr", "libopencore_amrnb", 8000),
    "WebM/Opus": ("webm", "libopus", 48000),  # Chrome's and Firefox's MediaRecorder
    "OGG/Opus": ("ogg", "libopus", 48000),  # Firefox's MediaRecorder, WhatsApp voice notes
}
ALL_KINDS = [*KINDS, "AMR-WB", "3GP/AMR-WB"]
