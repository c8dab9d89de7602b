"""The ESL wire format, the one place it is written: framing, parsing and percent-coding.

Used by the dialer's adapter (``dialer.esl``), the FreeSWITCH simulator and the capture replay
server, so all three frame and parse bytes the same way.

Framing (as a real FreeSWITCH 1.11 sends it): every message is a block of ``Name: value``
lines ended by an empty line (LF only). With ``Content-Length: N`` exactly N body bytes follow
and nothing else. Events put ``Content-Length`` before ``Content-Type``; api/response and
disconnect notices put ``Content-Type`` first. Event bodies of ``text/event-plain`` are
header blocks again, with every value percent-encoded (``switch_url_encode``).

Two readers:

* :func:`read_message` + :func:`parse_plain_event` / :func:`parse_json_event`: the adapter's
  fast path (headers into a dict, each value decoded on its own, EOF anywhere inside a message
  is an error);
* :func:`parse_stream` / :class:`StreamReader` / :class:`Message` / :class:`Event`: strict and
  order-preserving, for the simulator's templates, the replay server and the tests that compare
  the simulator's bytes with the captures.

Writers: :func:`url_encode` and the frame builders (``auth_request``, ``command_reply``,
``api_response``, ``disconnect_notice``, ``plain_event``, ``json_event``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO
from urllib.parse import unquote

MAX_LINE = 64 * 1024
MAX_OUTER_HEADERS = 64
MAX_BODY = 32 * 1024 * 1024


class EslError(Exception):
    """Base class of every error raised by the adapter."""


class EslProtocolError(EslError):
    """The byte stream is not valid ESL framing (includes EOF inside a message)."""


# --------------------------------------------------------------------------- reading (adapter)

@dataclass(frozen=True)
class Reply:
    """A ``command/reply`` or ``api/response`` message."""

    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        """True unless FreeSWITCH answered ``-ERR ...``."""
        if self.content_type == "api/response":
            return not self.text.startswith("-ERR")
        return self.reply_text.startswith("+OK")


@dataclass(frozen=True)
class RawEvent:
    """One ESL event: decoded headers and the optional event body.

    Internal to the adapter; the dialer only sees :mod:`dialer.events`.
    """

    headers: dict[str, str]
    body: str | None = None
    content_type: str = "text/event-plain"

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")


def _split_header(line: bytes) -> tuple[str, str] | None:
    """``b"Name: value\\n"`` -> ``("Name", "value")``; None for a line without a colon."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    name, sep, value = text.partition(":")
    if not sep or not name:
        return None
    value = value.removeprefix(" ")
    return name.strip(), value


def read_message(stream: BinaryIO) -> tuple[dict[str, str], bytes] | None:
    """Read one ESL message (outer header block + ``Content-Length`` body).

    Returns None on a clean EOF between messages.  EOF anywhere inside a
    message, an over-long line or a bad ``Content-Length`` raise
    :class:`EslProtocolError`; the caller ends the connection.
    """
    headers: dict[str, str] = {}
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            if headers:
                raise EslProtocolError("connection closed inside a header block")
            return None
        if not line.endswith(b"\n"):
            if len(line) >= MAX_LINE:
                raise EslProtocolError(f"header line longer than {MAX_LINE} bytes")
            raise EslProtocolError("connection closed inside a header line")
        if line in (b"\n", b"\r\n"):
            if headers:
                break
            continue  # stray blank line between messages
        pair = _split_header(line)
        if pair is not None:
            headers[pair[0]] = pair[1]
            if len(headers) > MAX_OUTER_HEADERS:
                raise EslProtocolError("too many headers in one message")
    length_text = headers.get("Content-Length")
    if length_text is None:
        return headers, b""
    try:
        length = int(length_text)
    except ValueError:
        raise EslProtocolError(f"bad Content-Length {length_text!r}") from None
    if length < 0 or length > MAX_BODY:
        raise EslProtocolError(f"Content-Length {length} out of range")
    body = stream.read(length) if length else b""
    if len(body) != length:
        raise EslProtocolError(
            f"connection closed after {len(body)} of {length} body bytes"
        )
    return headers, body


@lru_cache(maxsize=16)
def _line_keys(wanted: frozenset[str]) -> tuple[tuple[str, bytes], ...]:
    """``(name, b"\\nName:")`` for every wanted header and ``Content-Length``."""
    return tuple((name, b"\n" + name.encode() + b":") for name in sorted(wanted | {"Content-Length"}))


def _pick(head: bytes, wanted: frozenset[str]) -> dict[str, str]:
    """The wanted header lines of a block, found by a byte search each (C speed, ~1 us per header
    for a 7 KB hangup event; a value never holds a raw line break, FreeSWITCH encodes it). The
    last line of a name wins, as in the full parse."""
    block = b"\n" + head
    headers: dict[str, str] = {}
    for name, key in _line_keys(wanted):
        at = block.rfind(key)
        if at < 0:
            continue
        start = at + len(key)
        end = block.find(b"\n", start)
        raw = (block[start:] if end < 0 else block[start:end]).rstrip(b"\r")
        headers[name] = _value(raw.decode("utf-8", "replace").removeprefix(" "))
    return headers


def _value(raw: str) -> str:
    return unquote(raw, encoding="utf-8", errors="replace") if "%" in raw else raw


def parse_plain_event(data: bytes, wanted: frozenset[str] | None = None) -> RawEvent:
    """Parse the body of a ``text/event-plain`` message.

    Lines are split first and each value is percent-decoded on its own, so an
    encoded line break inside a value stays inside that value.  An inner
    ``Content-Length`` (BACKGROUND_JOB) announces a raw body after the blank line.
    With ``wanted``, only those headers (and ``Content-Length``) are read (:func:`_pick`); the
    others are never split or decoded (a hangup event has ~200 headers).
    """
    head, _, rest = data.partition(b"\n\n")
    headers: dict[str, str]
    if wanted is not None:
        headers = _pick(head, wanted)
    else:
        headers = {}
        # the whole block decoded at once (a line break never falls inside a UTF-8 sequence),
        # then each line as ``_split_header`` splits it; most values need no percent-decoding
        for line in head.decode("utf-8", "replace").split("\n"):
            name, sep, value = line.rstrip("\r\n").partition(":")
            if not sep or not name:
                continue
            headers[name.strip()] = _value(value.removeprefix(" "))
    body: str | None = None
    if "Content-Length" in headers:
        try:
            length = int(headers["Content-Length"])
        except ValueError:
            raise EslProtocolError("bad inner Content-Length") from None
        if length < 0 or length > len(rest):
            raise EslProtocolError("inner body shorter than its Content-Length")
        body = rest[:length].decode("utf-8", "replace")
    return RawEvent(headers, body, "text/event-plain")


def parse_json_event(data: bytes, wanted: frozenset[str] | None = None) -> RawEvent:
    """Parse the body of a ``text/event-json`` message (body in ``_body``); with ``wanted``, only
    those headers are kept."""
    obj = json.loads(data.decode("utf-8", "replace"))
    if not isinstance(obj, dict):
        raise EslProtocolError("JSON event is not an object")
    body = obj.get("_body")
    if wanted is not None:
        headers = {k: str(obj[k]) for k in wanted if k in obj}
    else:
        headers = {str(k): str(v) for k, v in obj.items() if k != "_body"}
    return RawEvent(headers, None if body is None else str(body), "text/event-json")


# --------------------------------------------------------------------------- percent-coding and writing

# Characters FreeSWITCH's switch_url_encode() escapes besides control / non-ASCII bytes.
_ESCAPED = set(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_HEX = b"0123456789abcdefABCDEF"
_SAFE_RE = re.compile(
    "[{}]*\\Z".format(re.escape("".join(chr(b) for b in range(0x21, 0x7F) if b not in _ESCAPED)))
)
_TABLE = [
    (f"%{b:02X}") if (b < 0x21 or b > 0x7E or b in _ESCAPED) else chr(b) for b in range(256)
]


def url_encode(value: str) -> str:
    """Percent-encode a header value like FreeSWITCH does for text/event-plain.

    ``,/()._-'`` and other printable ASCII stay literal; ``%`` followed by two hex digits is
    left alone (FreeSWITCH does not double-encode).
    """
    if _SAFE_RE.match(value):
        return value
    raw = value.encode("utf-8")
    out = []
    n = len(raw)
    for i, b in enumerate(raw):
        if b == 0x25 and i + 2 < n and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append("%")
        else:
            out.append(_TABLE[b])
    return "".join(out)


def url_decode(value: str) -> str:
    """Inverse of :func:`url_encode` (not exact for values that contained ``%XX``)."""
    return unquote(value)



def auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def command_reply(text: str, extra: str = "") -> bytes:
    """``command/reply`` with ``Reply-Text``; ``extra`` holds additional header lines."""
    return (f"Content-Type: command/reply\nReply-Text: {text}\n{extra}\n").encode()


def api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def disconnect_notice(body: bytes) -> bytes:
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n%s" % (len(body), body)


def plain_event(headers_block: bytes, body: bytes | None = None) -> bytes:
    """Wrap an already encoded ``Name: value\\n`` block as text/event-plain.

    Without a body the inner block ends with an empty line; with a body the inner block gets
    its own trailing ``Content-Length`` header, a blank line and the raw body bytes.
    """
    inner = headers_block + b"\n" if body is None else headers_block + b"Content-Length: %d\n\n%s" % (len(body), body)
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(inner), inner)


def json_event(pairs: list[tuple[str, str]], body: str | None = None) -> bytes:
    """text/event-json: one compact JSON object, every value a string."""
    obj = dict(pairs)
    if body is not None:
        obj["Content-Length"] = str(len(body.encode()))
        obj["_body"] = body
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n%s" % (len(data), data)


# --------------------------------------------------------------------------- strict reading (simulator, replay, tests)

class FrameError(ValueError):
    pass


class Message:
    """One ESL message: outer headers (ordered), raw body bytes and the message's own bytes."""

    __slots__ = ("headers", "body", "raw")

    def __init__(self, headers: list[tuple[str, str]], body: bytes, raw: bytes = b""):
        self.headers = headers
        self.body = body
        self.raw = raw

    @property
    def is_reply(self) -> bool:
        return self.content_type in ("command/reply", "api/response")

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    @property
    def content_type(self) -> str | None:
        return self.get("Content-Type")

    def event(self) -> Event | None:
        """The inner event of a text/event-plain or text/event-json message."""
        ct = self.content_type
        if ct == "text/event-plain":
            return Event.from_plain(self.body)
        if ct == "text/event-json":
            return Event.from_json(self.body)
        return None

    def __repr__(self) -> str:
        return f"Message({self.headers!r}, {self.body[:60]!r})"


class Event:
    """An event's header list (decoded values, in wire order) and its optional body."""

    __slots__ = ("headers", "raw_headers", "body")

    def __init__(self, headers, raw_headers, body):
        self.headers: list[tuple[str, str]] = headers
        self.raw_headers: list[tuple[str, str]] = raw_headers
        self.body: str | None = body

    @property
    def name(self) -> str | None:
        return self.get("Event-Name")

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def names(self) -> list[str]:
        return [k for k, _ in self.headers]

    @classmethod
    def from_plain(cls, data: bytes) -> Event:
        end = data.find(b"\n\n")
        if end < 0:
            raise FrameError("plain event without blank line")
        raw = _split_headers(data[:end])
        body = None
        rest = data[end + 2:]
        if raw and raw[-1][0] == "Content-Length":
            n = int(raw[-1][1])
            if len(rest) != n:
                raise FrameError(f"inner body length {len(rest)} != {n}")
            body = rest.decode()
            raw = raw[:-1]
        elif rest:
            raise FrameError(f"bytes after plain event block: {rest[:40]!r}")
        return cls([(k, url_decode(v)) for k, v in raw], raw, body)

    @classmethod
    def from_json(cls, data: bytes) -> Event:
        obj = json.loads(data)
        body = obj.pop("_body", None)
        if body is not None:
            obj.pop("Content-Length", None)
        for k, v in obj.items():
            if not isinstance(v, str):
                raise FrameError(f"non-string JSON value for {k}")
        items = list(obj.items())
        return cls(items, items, body)


def _split_headers(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode("utf-8").split("\n"):
        if "\r" in line:
            raise FrameError("CR in header line")
        name, sep, value = line.partition(": ")
        if not sep:
            raise FrameError(f"bad header line {line!r}")
        out.append((name, value))
    return out


def parse_stream(data: bytes, allow_partial: bool = False) -> list[Message]:
    """Split a byte stream into messages; raise on anything malformed or truncated."""
    msgs = []
    i = 0
    n = len(data)
    while i < n:
        start = i
        end = data.find(b"\n\n", i)
        if end < 0:
            if allow_partial:
                break
            raise FrameError(f"truncated header block at {i}")
        headers = _split_headers(data[i:end])
        i = end + 2
        body = b""
        length = dict(headers).get("Content-Length")
        if length is not None:
            ln = int(length)
            if i + ln > n:
                if allow_partial:
                    break
                raise FrameError(f"truncated body at {i}")
            body = data[i:i + ln]
            i += ln
        msgs.append(Message(headers, body, data[start:i]))
    return msgs


class StreamReader:
    """Incremental strict reader over a socket-like object with ``recv``."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read(self) -> Message | None:
        """Next message, or None on a clean EOF between messages."""
        while True:
            end = self.buf.find(b"\n\n")
            if end >= 0:
                headers = _split_headers(self.buf[:end])
                length = dict(headers).get("Content-Length")
                ln = int(length) if length is not None else 0
                if len(self.buf) >= end + 2 + ln:
                    body = self.buf[end + 2:end + 2 + ln]
                    raw, self.buf = self.buf[:end + 2 + ln], self.buf[end + 2 + ln:]
                    return Message(headers, body, raw)
            if not self._fill():
                if self.buf:
                    raise FrameError(f"EOF inside a message ({len(self.buf)} bytes pending)")
                return None
