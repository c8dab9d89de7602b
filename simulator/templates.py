"""Precompiled event templates (generated from real captures by ``build_templates``).

A template keeps the captured header names, order and static values; per-call values are
placeholders. Compiling turns each template into a list of ready byte chunks (runs of static
headers already percent-encoded) and a few dynamic slots, so rendering an event is a short
loop and one ``b"".join``.
"""
from __future__ import annotations

import json
import os

from dialer import esl_wire as wire

SENTINEL = "\x01"
VARS = object()  # slot for the originate's {k=v} channel variables


class Template:
    """One event type as captured; renders text/event-plain and text/event-json."""

    __slots__ = ("name", "plain", "json", "keys")

    def __init__(self, headers: list[list[str]]):
        self.name = headers[0][1]
        for n, v in headers:
            if n == "Event-Subclass":
                self.name = v  # CUSTOM events are addressed by subclass
        plain: list = []
        js: list = []
        static: list[str] = []
        self.keys = set()
        for name, value in headers:
            if name == "@VARS":
                if static:
                    plain.append("".join(static).encode())
                    static = []
                plain.append(VARS)
                js.append(VARS)
                continue
            if SENTINEL not in value:
                static.append(f"{name}: {wire.url_encode(value)}\n")
                js.append((name, value))
                continue
            raw = value.split(SENTINEL)  # literal, key, literal, key, literal...
            keys = raw[1::2]
            self.keys.update(keys)
            # A header whose whole value is an absent optional key (no caller id name) is
            # left out, exactly as FreeSWITCH leaves out unset caller profile fields.
            optional = raw[0] == "" and raw[-1] == "" and len(raw) == 3
            if static:
                plain.append("".join(static).encode())
                static = []
            enc = [wire.url_encode(p) if i % 2 == 0 else p for i, p in enumerate(raw)]
            plain.append((name + ": ", enc, optional))
            js.append((name, raw, optional))
        if static:
            plain.append("".join(static).encode())
        self.plain = plain
        self.json = js

    def render_plain(self, enc: dict, vars_block: bytes) -> bytes:
        """Header block (no final blank line); ``enc`` maps keys to encoded values."""
        out = []
        for item in self.plain:
            if item.__class__ is bytes:
                out.append(item)
            elif item is VARS:
                out.append(vars_block)
            else:
                prefix, parts, optional = item
                if len(parts) == 3 and parts[0] == "" and parts[2] == "":
                    v = enc.get(parts[1])
                    if v is None:
                        if optional:
                            continue
                        v = ""
                    out.append((prefix + v + "\n").encode())
                else:
                    s = [prefix]
                    for i, p in enumerate(parts):
                        s.append(p if i % 2 == 0 else (enc.get(p) or ""))
                    s.append("\n")
                    out.append("".join(s).encode())
        return b"".join(out)

    def render_pairs(self, raw: dict, var_pairs: list) -> list:
        """(name, value) pairs with raw values, for text/event-json."""
        out = []
        for item in self.json:
            if item is VARS:
                out.extend(var_pairs)
            elif len(item) == 2:
                out.append(item)
            else:
                name, parts, optional = item
                if optional and raw.get(parts[1]) is None:
                    continue
                out.append((name, "".join(p if i % 2 == 0 else (raw.get(p) or "")
                                          for i, p in enumerate(parts))))
        return out


class TemplateSet:
    """All templates, the per-scenario segments and the show channels/calls row shapes."""

    def __init__(self, path: str | None = None):
        path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates.json")
        with open(path) as f:
            data = json.load(f)
        self.templates = [Template(t) for t in data["templates"]]
        # segment steps: Template objects, or the markers "API" / "BJ"
        self.segments = {
            name: [s if isinstance(s, str) else self.templates[s] for s in steps]
            for name, steps in data["segments"].items()
        }
        self.singles = {k: self.templates[v] for k, v in data["singles"].items()}
        self.show_keys = {k: list(rows[0].keys()) for k, rows in data["show_rows"].items()}


_DEFAULT: TemplateSet | None = None


def default_templates() -> TemplateSet:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TemplateSet()
    return _DEFAULT
