"""ESL wire format: FreeSWITCH's percent-encoding, message framing and a strict parser.

Framing (as a real FreeSWITCH 1.11 sends it): every message is a block of ``Name: value``
lines ended by an empty line (LF only). With ``Content-Length: N`` exactly N body bytes follow
and nothing else. Events put ``Content-Length`` before ``Content-Type``; api/response and
disconnect notices put ``Content-Type`` first.
"""
from __future__ import annotations

import json
import re

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
    from urllib.parse import unquote

    return unquote(value)


# --- framing of outgoing messages -------------------------------------------------------

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


# --- strict parser (used by the template builder and by tests) -------------------------

class FrameError(ValueError):
    pass


class Message:
    """One ESL message: outer headers (ordered) and raw body bytes."""

    __slots__ = ("headers", "body")

    def __init__(self, headers: list[tuple[str, str]], body: bytes):
        self.headers = headers
        self.body = body

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
        msgs.append(Message(headers, body))
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
                    self.buf = self.buf[end + 2 + ln:]
                    return Message(headers, body)
            if not self._fill():
                if self.buf:
                    raise FrameError(f"EOF inside a message ({len(self.buf)} bytes pending)")
                return None
