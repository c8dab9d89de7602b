"""CSV text that a spreadsheet opens as data, never as formulas (OWASP "CSV injection").

Every CSV the API writes goes through ``csv_chunks``: each text cell passes ``safe_cell`` and
every cell is quoted.

* A cell is dangerous when its text, trimmed of leading whitespace (spaces, NBSP and every other
  Unicode space) and invisible format characters (zero-width space, BOM, direction marks), starts
  with ``=``, ``+``, ``-`` or ``@``, or when its raw text starts with a tab or a carriage return.
* A cell is also dangerous when a separator inside it (``,``, ``;``, tab, or a line break) is
  followed by such a start: a spreadsheet that splits on ``;`` (Excel in many locales) or on tabs
  would begin a new cell there.
* A dangerous cell gets a leading ``'``, which spreadsheets take as "this is text".
* Quoting every cell keeps a separator inside a cell from splitting it, whatever separator the
  spreadsheet assumes; the ``'`` then protects the only cell there is.
* Line breaks inside a cell (CR, LF and the other Unicode line boundaries) become spaces: opened
  with another separator than ours, LibreOffice ends a row at a line break even inside quotes, and
  what follows would start a cell of its own.

Standard library only.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

__all__ = ["CHUNK_CHARS", "csv_chunks", "is_dangerous", "safe_cell"]

CHUNK_CHARS: Final = 64 * 1024  # csv_chunks yields pieces of about this size

_SEPARATORS: Final = frozenset(",;\t\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_TRIGGER: Final = re.compile(r"[=+\-@]")
_CONTROL_AFTER_SEPARATOR: Final = re.compile("[,;\t\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029][\t\r]")


def _invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf"


def is_dangerous(text: str) -> bool:
    """Would a spreadsheet read this cell (or a part of it split off at a separator) as a formula?"""
    if text[:1] in ("\t", "\r") or _CONTROL_AFTER_SEPARATOR.search(text) is not None:
        return True
    for match in _TRIGGER.finditer(text):
        i = match.start() - 1
        while i >= 0 and text[i] not in _SEPARATORS and _invisible(text[i]):
            i -= 1
        if i < 0 or text[i] in _SEPARATORS:  # nothing visible before it in its (split-off) cell
            return True
    return False


_LINE_BREAKS: Final = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def safe_cell(value: object) -> object:
    """A text cell on one line, with a leading ``'`` when it is dangerous; other values unchanged."""
    if not isinstance(value, str):
        return value
    text = _LINE_BREAKS.sub(" ", value)
    return "'" + text if is_dangerous(value) or is_dangerous(text) else text


def csv_chunks(rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """CSV text (CRLF, every cell quoted, text cells made safe) in pieces of about ``CHUNK_CHARS``."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        if buf.tell() > CHUNK_CHARS:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    tail = buf.getvalue()
    if tail:
        yield tail
