"""Raw-socket ESL client and capture helpers for the simulator tests (strict parsing)."""
from __future__ import annotations

import os
import socket
import time

from dialer.esl_wire import Message, StreamReader, parse_stream
from tests.fixtures import CAPTURES as FIXTURE_CAPTURES

CAPTURES = str(FIXTURE_CAPTURES)


def load_capture(name: str) -> list[Message]:
    with open(os.path.join(CAPTURES, name), "rb") as f:
        return parse_stream(f.read())


def sent_commands(name: str) -> list[str]:
    stem = name[:-4] if name.endswith(".txt") else name
    with open(os.path.join(CAPTURES, "sent", stem + ".sent.txt")) as f:
        return [c for c in f.read().split("\n\n") if c.strip()]


class RawClient:
    """Sends raw command blocks and records every message received, strictly parsed."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.reader = StreamReader(self.sock)
        self.msgs: list[Message] = []
        self.eof = False

    def send(self, command: str) -> None:
        self.sock.sendall(command.encode() + b"\n\n")

    def read(self, timeout: float = 10.0) -> Message | None:
        self.sock.settimeout(timeout)
        msg = self.reader.read()
        if msg is None:
            self.eof = True
        else:
            self.msgs.append(msg)
        return msg

    def read_until(self, pred, timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"condition not met; got {len(self.msgs)} messages")
            msg = self.read(left)
            if msg is None:
                raise EOFError("connection closed")
            if pred(msg):
                return msg

    def read_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.read(left)
            except TimeoutError:
                return

    def read_to_eof(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.eof:
            self.read(max(0.01, deadline - time.monotonic()))

    def api(self, command: str, timeout: float = 10.0) -> Message:
        self.send("api " + command)
        return self.read_until(lambda m: m.content_type == "api/response", timeout)

    def close(self) -> None:
        self.sock.close()


def event_of(msg: Message):
    return msg.event()


def is_event(msg: Message, name: str, uuid: str | None = None) -> bool:
    ev = msg.event()
    if ev is None or ev.name != name:
        return False
    return uuid is None or ev.get("Unique-ID") == uuid
