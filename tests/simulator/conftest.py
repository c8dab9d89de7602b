"""Fixtures: the simulator as a subprocess on port 0, plus a 5 s test WAV."""
from __future__ import annotations

import os
import subprocess
import sys
import wave

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SimProcess:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0",
             "--password", "ClueCon", *args],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING 127.0.0.1:"), line
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()


@pytest.fixture
def start_sim():
    procs = []

    def start(*args: str) -> SimProcess:
        p = SimProcess(*args)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture(scope="session")
def wav5(tmp_path_factory) -> str:
    """8 kHz mono 16-bit, 5.0 s (40000 frames) like the captures' test.wav."""
    path = str(tmp_path_factory.mktemp("audio") / "test.wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 40000)
    return path
