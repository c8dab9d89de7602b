"""Shared helpers for the ESL adapter tests.

The tests run in a process that is not monkey-patched: servers and clients use
gevent APIs explicitly.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import gevent.queue
import gevent.subprocess

from dialer.esl_wire import RawEvent, parse_json_event, parse_plain_event, read_message
from tests.fixtures import CAPTURES


def capture(name: str) -> bytes:
    return (CAPTURES / name).read_bytes()


def sent_commands(name: str) -> list[str]:
    """Commands the capture's client sent (``sent/<name>.sent.txt``)."""
    stem = name[: -len(".txt")]
    data = (CAPTURES / "sent" / f"{stem}.sent.txt").read_text()
    return [c for c in data.split("\n\n") if c]


def index() -> dict[str, Any]:
    """The captures' index.json."""
    result: dict[str, Any] = json.loads((CAPTURES / "index.json").read_text())
    return result


def messages(data: bytes) -> Iterator[tuple[dict[str, str], bytes]]:
    stream = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    while True:
        message = read_message(stream)
        if message is None:
            return
        yield message


def raw_events(data: bytes) -> list[RawEvent]:
    events = []
    for headers, body in messages(data):
        ctype = headers.get("Content-Type")
        if ctype == "text/event-plain":
            events.append(parse_plain_event(body))
        elif ctype == "text/event-json":
            events.append(parse_json_event(body))
    return events


class Collector:
    """``on_event`` for EslClient: a queue the test reads with a deadline."""

    def __init__(self) -> None:
        self.queue: gevent.queue.Queue = gevent.queue.Queue()
        self.seen: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.queue.put_nowait(event)

    def next(self, timeout: float = 5.0) -> Any:
        event = self.queue.get(timeout=timeout)
        self.seen.append(event)
        return event

    def until(self, predicate: Any, timeout: float = 5.0) -> Any:
        with gevent.Timeout(timeout, AssertionError(f"not seen; got {self.seen!r}")):
            while True:
                event = self.next(timeout)
                if predicate(event):
                    return event

    def drain(self, quiet: float = 0.2) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self.next(quiet))
            except gevent.queue.Empty:
                return out


@contextmanager
def simulator_process(*args: str) -> Iterator[tuple[str, int, gevent.subprocess.Popen]]:
    """``python -m simulator`` on a free port (password ClueCon, ``args`` added): its host, port
    and process, terminated on exit."""
    proc = gevent.subprocess.Popen(
        [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", "0", "--password", "ClueCon", *args],
        cwd=Path(__file__).resolve().parents[2], stdout=gevent.subprocess.PIPE)
    try:
        with gevent.Timeout(15, AssertionError("simulator did not print LISTENING")):
            line = proc.stdout.readline().decode().strip()
        assert line.startswith("LISTENING "), line
        host, _, port = line.split(" ", 1)[1].rpartition(":")
        yield host, int(port), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except gevent.subprocess.TimeoutExpired:
            proc.kill()
