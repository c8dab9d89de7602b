"""Serve a recorded FreeSWITCH ESL transcript over a real socket (for tests).

A capture file holds the exact bytes FreeSWITCH sent on one connection.  The
replay server splits it into messages and paces them by the client's
commands, so a client pairs replies with commands exactly as it would against
the real switch:

``single`` mode (one connection): send everything up to and including the
``auth/request``; then for each command received, send everything up to and
including the next reply (``command/reply`` / ``api/response``); events before
a reply flow with it.  After the last reply the rest (events, disconnect
notice) is sent; a transcript that ends with a disconnect notice closes the
socket, as FreeSWITCH does.

``split`` mode (the dialer's two connections): the connection whose first
command after ``auth`` is ``event ...`` gets the capture's auth and
subscription replies and then its events and notices; the other connection
gets ``+OK accepted`` and then, one per command, the capture's remaining
replies.  An event is released only once every reply that preceded it in the
capture has been sent, so events still follow the commands that caused them.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket as socket

from dialer import esl_wire as wire

log = logging.getLogger(__name__)

_ACCEPTED = wire.command_reply("+OK accepted")


def _read_command(reader: Any) -> str | None:
    """One client command (lines up to a blank line); None at EOF."""
    lines: list[str] = []
    while True:
        line = reader.readline()
        if not line:
            return None
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if text == "":
            if lines:
                return "\n".join(lines)
            continue
        lines.append(text)


class ReplayServer:
    """``ReplayServer(capture_bytes).start()`` then connect to ``.address``."""

    def __init__(self, capture: bytes, *, mode: str = "single") -> None:
        if mode not in ("single", "split"):
            raise ValueError(mode)
        self.messages = wire.parse_stream(capture)
        self.mode = mode
        self.commands: list[list[str]] = []  # per connection, in arrival order
        self._server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self._released = -1  # index of the last reply sent (split mode)
        self._progress = gevent.event.Event()
        self._reply_indexes = [i for i, m in enumerate(self.messages) if m.is_reply]
        self._next_reply = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.address[:2]
        return str(host), int(port)

    def start(self) -> ReplayServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=1)

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connections ----------------------------------------------------------------

    def _handle(self, sock: Any, _addr: Any) -> None:
        received: list[str] = []
        self.commands.append(received)
        reader = sock.makefile("rb")
        try:
            if self.mode == "single":
                self._serve_single(sock, reader, received)
            else:
                self._serve_split(sock, reader, received)
        except OSError:
            pass
        finally:
            _hang_up(sock)

    def _send_range(self, sock: Any, start: int, stop: int) -> bool:
        """Send messages[start:stop]; True if a disconnect notice was among them."""
        notice = False
        for message in self.messages[start:stop]:
            sock.sendall(message.raw)
            notice = notice or message.content_type == "text/disconnect-notice"
        return notice

    def _serve_single(self, sock: Any, reader: Any, received: list[str]) -> None:
        first_auth = next(
            i for i, m in enumerate(self.messages) if m.content_type == "auth/request"
        )
        self._send_range(sock, 0, first_auth + 1)
        cursor = first_auth + 1
        while True:
            replies = [i for i in self._reply_indexes if i >= cursor]
            if not replies:
                if self._send_range(sock, cursor, len(self.messages)):
                    return
                cursor = len(self.messages)
            command = _read_command(reader)
            if command is None:
                return
            received.append(command)
            if not replies:
                continue  # nothing left to answer with: the client will time out
            if self._send_range(sock, cursor, replies[0] + 1):
                return
            cursor = replies[0] + 1

    def _serve_split(self, sock: Any, reader: Any, received: list[str]) -> None:
        sock.sendall(wire.auth_request())
        auth = _read_command(reader)
        if auth is None:
            return
        received.append(auth)
        first = _read_command_after(sock, reader, received)
        if first is None:
            return
        if first.startswith("event "):
            self._serve_events(sock, reader, received)
        else:
            self._serve_commands(sock, reader, received, first)

    def _serve_events(self, sock: Any, reader: Any, received: list[str]) -> None:
        # the capture's second reply answers the subscription (the first is auth)
        event_reply = self._reply_indexes[1]
        sock.sendall(self.messages[event_reply].raw)
        self._released = max(self._released, event_reply)
        self._next_reply = max(self._next_reply, 2)
        self._progress.set()
        sender = gevent.spawn(self._send_events, sock, event_reply)
        try:
            while True:
                command = _read_command(reader)
                if command is None:
                    return
                received.append(command)
        finally:
            sender.kill()

    def _send_events(self, sock: Any, after: int) -> None:
        for index in range(after + 1, len(self.messages)):
            message = self.messages[index]
            if message.is_reply:
                continue
            while self._released < self._last_reply_before(index):
                self._progress.clear()
                self._progress.wait()
            sock.sendall(message.raw)
            if message.content_type == "text/disconnect-notice":
                _hang_up(sock)
                return

    def _last_reply_before(self, index: int) -> int:
        last = -1
        for i in self._reply_indexes:
            if i >= index:
                break
            last = i
        return last

    def _serve_commands(
        self, sock: Any, reader: Any, received: list[str], first: str
    ) -> None:
        command: str | None = first
        while command is not None:
            if command != "exit":
                if self._next_reply < 2:  # let the events connection subscribe first
                    self._progress.wait(timeout=5)
                    self._next_reply = max(self._next_reply, 2)
                if self._next_reply < len(self._reply_indexes):
                    index = self._reply_indexes[self._next_reply]
                    self._next_reply += 1
                    sock.sendall(self.messages[index].raw)
                    self._released = max(self._released, index)
                    self._progress.set()
            command = _read_command(reader)
            if command is not None:
                received.append(command)


def _hang_up(sock: Any) -> None:
    """Close the connection now (shutdown: a file object may still hold the socket)."""
    for step in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            step()
        except OSError:
            pass


def _read_command_after(sock: Any, reader: Any, received: list[str]) -> str | None:
    sock.sendall(_ACCEPTED)
    command = _read_command(reader)
    if command is not None:
        received.append(command)
    return command

