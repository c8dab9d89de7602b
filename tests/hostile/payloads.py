"""Hostile upload payloads: (label, file name, bytes). Deterministic for a given random generator."""

from __future__ import annotations

import gzip
import io
import random
import struct
import zipfile

import numpy as np
import soundfile as sf

# Headers that are odd but decodable: libsndfile reads them as the PCM they describe (a block
# align or RIFF size of 0 is ignored, junk chunks are legal RIFF, compressed bytes after a PCM
# header are noise). They may be accepted, bounded by the duration limit, or refused; never a 5xx.
MAY_DECODE = {"WAV block_align 0", "WAV riff size 0", "WAV 1000 junk chunks", "WAV header + gzip bomb"}
TRAVERSAL_NAMES = ["../../etc/passwd", "..\\..\\x.wav", "a\x00b.wav", "../x.wav", "..", "x/../../y.wav",
                   "message.wav\x00.png", "bad\x01name.wav"]


def good_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def good_mp3(seconds: float = 1.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="MP3")
    return buf.getvalue()


def wav_header(*, riff_size: int = 36, fmt_size: int = 16, codec: int = 1, channels: int = 1, rate: int = 8000,
               byte_rate: int = 16000, block_align: int = 2, bits: int = 16, data_size: int = 0,
               data: bytes = b"") -> bytes:
    return (b"RIFF" + struct.pack("<I", riff_size & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", fmt_size)
            + struct.pack("<HHIIHH", codec, channels, rate & 0xFFFFFFFF, byte_rate & 0xFFFFFFFF, block_align, bits)
            + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF) + data)


def absurd_wavs() -> list[tuple[str, bytes]]:
    pcm = b"\x00\x01" * 4000
    cases = [
        ("rate 0", dict(rate=0, byte_rate=0)),
        ("rate 4294967295", dict(rate=0xFFFFFFFF)),
        ("rate 1", dict(rate=1, byte_rate=2)),
        ("channels 0", dict(channels=0)),
        ("channels 65535", dict(channels=65535, block_align=65535)),
        ("bits 0", dict(bits=0)),
        ("bits 65535", dict(bits=65535)),
        ("block_align 0", dict(block_align=0)),
        ("codec 0xFFFF", dict(codec=0xFFFF)),
        ("codec ADPCM without extension", dict(codec=2)),
        ("data size 4 GB", dict(data_size=0xFFFFFFF0)),
        ("data size 24 h at 8 kHz", dict(data_size=8000 * 2 * 86400)),
        ("fmt size 4 GB", dict(fmt_size=0xFFFFFFF0)),
        ("fmt size 0", dict(fmt_size=0)),
        ("riff size 0", dict(riff_size=0)),
    ]
    out = [(f"WAV {label}", wav_header(data_size=kw.pop("data_size", len(pcm)), data=pcm, **kw))
           for label, kw in cases]
    # a LIST chunk before the data claiming 4 GB, and a header of a thousand empty chunks
    out.append(("WAV LIST chunk of 4 GB", good_wav()[:36] + b"LIST" + struct.pack("<I", 0xFFFFFFF0) + b"INFO"))
    out.append(("WAV 1000 junk chunks", good_wav()[:12] + (b"junk" + struct.pack("<I", 0)) * 1000 + good_wav()[12:]))
    out.append(("WAV header only", good_wav()[:44]))
    return out


def bombs() -> list[tuple[str, bytes]]:
    zeros = b"\x00" * (64 * 1024 * 1024)
    gz = gzip.compress(zeros, compresslevel=9)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("message.wav", zeros)
    # a gzip of a real WAV, and a WAV header glued in front of a gzip bomb
    return [("gzip bomb", gz), ("zip bomb", zipped.getvalue()), ("gzip of a WAV", gzip.compress(good_wav())),
            ("WAV header + gzip bomb", wav_header(data_size=len(gz), data=gz))]


def truncated(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    wav, mp3 = good_wav(), good_mp3()
    cuts = [0, 1, 3, 4, 8, 11, 12, 16, 20, 35, 36, 40, 43, 44, 45, 46]
    out = [(f"WAV cut at {n}", wav[:n]) for n in cuts]
    out += [(f"MP3 cut at {n}", mp3[:n]) for n in (1, 2, 3, 4, 10, 100)]
    out += [(f"WAV cut at random {n}", wav[:n]) for n in (rng.randrange(1, 200) for _ in range(count))]
    out += [(f"MP3 cut at random {n}", mp3[:n]) for n in (rng.randrange(1, 400) for _ in range(count))]
    return out


def random_bytes(rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    prefixes = [b"", b"RIFF\xff\xff\xff\xffWAVE", b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f", b"\xff\xfb\x90\x00", b"OggS",
                b"fLaC", b"FORM\x00\x00\x00\x00AIFF", b"RF64\xff\xff\xff\xffWAVE", b"PK\x03\x04", b"\x1f\x8b"]
    out = []
    for i in range(count):
        prefix = prefixes[i % len(prefixes)]
        size = rng.choice([1, 2, 16, 44, 100, 1000, 10_000, 100_000])
        out.append((f"random {size} B after {prefix[:4]!r}", prefix + rng.randbytes(size)))
    return out


def audio_payloads(rng: random.Random, count: int) -> list[tuple[str, str, bytes]]:
    """Every hostile audio upload: (label, file name, content). None of them is a usable message."""
    named = [(label, "message.wav", data) for label, data in
             random_bytes(rng, count) + truncated(rng, count) + absurd_wavs() + bombs()]
    named += [(f"huge ID3 tag size + {label}", "message.mp3", b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + data)
              for label, data in (("nothing", b""), ("zeros", b"\x00" * 1000))]
    named += [(f"traversal name {name!r}", name, good_wav()) for name in TRAVERSAL_NAMES]
    return named


def csv_payloads(rng: random.Random, count: int) -> list[tuple[str, str, bytes]]:
    """Hostile CSV uploads that must be refused before any import: binary, bombs, no numbers."""
    out = [(label, "numbers.csv", data) for label, data in bombs() + random_bytes(rng, count)
           if not _could_be_text(data)]
    out += [("empty", "numbers.csv", b""), ("only a header", "numbers.csv", b"phone\n"),
            ("NUL bytes", "numbers.csv", b"phone\n0300\x001234567\n"),
            ("a WAV", "numbers.csv", good_wav()), ("UTF-16 without BOM garbage", "numbers.csv", b"\x00\xd8" * 500)]
    out += [(f"traversal name {name!r}", name, b"phone\n03001234567\n") for name in TRAVERSAL_NAMES]
    return out


def _could_be_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
