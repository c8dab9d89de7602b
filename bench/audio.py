"""CPU per audio upload, by format, before (libsndfile, the code this change replaced) and after
(PyAV), in one run: what the web request spends and what the worker spends.

    python bench/audio.py                 # 30 s messages, near the 300 s maximum, the worst cases
    python bench/audio.py --repeat 5 --skip-worst

Columns, in CPU milliseconds of this thread (``time.thread_time``), median of ``--repeat`` runs:

* ``before``: ``convert_upload`` of the last commit with the single-module ``core/audio.py``
  (read from git), or the error it answers (e.g. the formats it refused);
* ``request``: the new ``convert_upload`` with the web request's budget (``AUDIO_INLINE_CPU_MS``,
  100): 201 when it converted, 202 when it handed the upload to the worker, or the 4xx error;
* ``worker``: the new conversion under the full limits, as the worker runs it.

The worst cases are the two uploads of the report (a 1.0 MB FLAC at 384 kHz, 8 channels, 299 s of
silence, and a 178 KB Ogg Vorbis at 192 kHz, 8 channels) and, for the worker's worst, the same
FLAC with its length erased from the header (decoded until the decoded-work cap stops it).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.audio import AudioError, Budget, ConversionDeferred, convert_upload  # noqa: E402
from core.settings import load_settings  # noqa: E402
from tests.unit.audio_samples import ALL_KINDS, encode_sf, sample  # noqa: E402

MB = 1 << 20


def previous_converter() -> tuple[ModuleType | None, str]:
    """The single-module core/audio.py of the commit before the package replaced it."""
    try:
        deleting = subprocess.run(["git", "rev-list", "-n", "1", "HEAD", "--", "core/audio.py"], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout.strip()
        rev = f"{deleting}^" if deleting else "HEAD"
        source = subprocess.run(["git", "show", f"{rev}:core/audio.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"unavailable ({exc})"
    path = Path(tempfile.mkdtemp()) / "audio_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("audio_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audio_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True).stdout
    return module, short.strip()


def cpu_ms(run: Callable[[], str], repeat: int) -> tuple[float, str]:
    """Median CPU ms of ``run`` and the outcome it reported."""
    times, outcome = [], ""
    for _ in range(repeat):
        started = time.thread_time()
        outcome = run()
        times.append((time.thread_time() - started) * 1000)
    return statistics.median(times), outcome


def attempt(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except ConversionDeferred:
        return "202 (worker)"
    except AudioError as exc:
        return exc.code
    except Exception as exc:  # noqa: BLE001 (the old code's own errors have their own classes)
        return getattr(exc, "code", type(exc).__name__)
    return f"201 {result.duration_ms / 1000:.1f} s"


def flac_worst(seconds: int = 299) -> bytes:
    block = np.zeros((384_000, 8), dtype=np.float32)
    return encode_sf(np.concatenate([block] * seconds), 384_000, "FLAC", "PCM_16", block=384_000)


def ogg_worst(seconds: int = 299) -> bytes:
    block = np.zeros((192_000, 8), dtype=np.float32)
    return encode_sf(np.concatenate([block] * seconds), 192_000, "OGG", "VORBIS", block=192_000)


def without_length(flac: bytes) -> bytes:
    out = bytearray(flac)
    out[21] &= 0xF0
    out[22:26] = bytes(4)
    return bytes(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the typical message")
    parser.add_argument("--skip-worst", action="store_true", help="skip the worst cases (they take ~30 s to make)")
    args = parser.parse_args()

    settings = load_settings()
    limits = {"max_bytes": settings.max_audio_bytes, "max_seconds": settings.max_audio_seconds}
    budget = Budget.for_cpu_ms(settings.audio_inline_cpu_ms)
    before, rev = previous_converter()
    print(f"CPU ms per upload (median of {args.repeat}); before = core/audio.py at {rev}; request budget "
          f"{settings.audio_inline_cpu_ms} ms / {budget.samples:,} samples; max_samples "
          f"{settings.max_audio_samples:,}")

    cases: list[tuple[str, bytes]] = []
    for kind in ALL_KINDS:
        cases.append((f"{kind} {args.seconds:g} s mono", sample(kind, args.seconds)))
    for kind in ("WebM/Opus", "M4A/AAC", "MP3", "FLAC"):
        cases.append((f"{kind} 295 s 48 kHz stereo", sample(kind, 295.0, rate=48_000, channels=2)))
    if not args.skip_worst:
        flac = flac_worst()
        cases += [("worst: FLAC 384 kHz 8 ch 299 s", flac), ("worst: Ogg Vorbis 192 kHz 8 ch 299 s", ogg_worst()),
                  ("worst: same FLAC, length erased", without_length(flac))]

    header = f"{'upload':42} {'bytes':>10}  {'before':>24}  {'request':>24}  {'worker':>24}"
    print(header)
    print("-" * len(header))
    for label, data in cases:
        cells = []
        if before is None:
            cells.append("-")
        else:
            ms, outcome = cpu_ms(lambda d=data: attempt(lambda: before.convert_upload(d, **limits)), args.repeat)
            cells.append(f"{ms:8.1f} {outcome[:15]:>15}")
        for extra in ({"budget": budget}, {}):
            ms, outcome = cpu_ms(lambda d=data, e=extra: attempt(lambda: convert_upload(
                d, **limits, max_samples=settings.max_audio_samples, **e)), args.repeat)
            cells.append(f"{ms:8.1f} {outcome[:15]:>15}")
        print(f"{label:42} {len(data):>10,}  {cells[0]:>24}  {cells[1]:>24}  {cells[2]:>24}", flush=True)


if __name__ == "__main__":
    main()
