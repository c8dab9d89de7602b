"""Phone numbers out of a customer's CSV, streamed in constant memory (standard library only).

Campaign files come from Excel, Google Sheets, phone exports and hand-written text files, so the
reader is forgiving about shape and strict about bytes:

* encoding: UTF-8 (with or without a BOM); UTF-16 / UTF-32 with a BOM are transcoded. Anything else
  is refused with the line of the first undecodable byte, never guessed.
* binary files (an .xlsx sent as CSV, a PDF, NUL bytes) and files without data rows are refused.
* delimiter: comma, semicolon or tab, sniffed from the first rows; a file without any is one column.
* quoted fields, delimiters and line breaks inside quotes, CRLF / LF / CR line ends.
* the phone column is found by its header (phone, mobile, msisdn, number, ... also in Urdu), or is the
  only column, or the only column whose values look like phone numbers. A first row whose phone
  cell is not number-like is a header.

``sniff`` looks at the first bytes only, so the API can refuse a hopeless upload at once;
``PhoneCsv`` streams ``(line_no, raw_value)`` pairs, where ``line_no`` is the physical line the row
starts on (what the customer sees in a text editor).

Work is bounded before any parsing: ``PhoneCsv`` stops at ``max_bytes`` bytes read (FILE_TOO_LARGE)
and at ``max_lines`` physical lines (TOO_MANY_LINES). Blank lines count: rows with nothing in them
are skipped before ``max_rows`` counts, so without the line bound a file of newlines would be read
to its end however long it is.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

__all__ = [
    "MAX_BYTES",
    "MAX_LINES",
    "MAX_LINE_CHARS",
    "SNIFF_BYTES",
    "CsvError",
    "CsvInfo",
    "PhoneCsv",
    "read_phone_numbers",
    "sniff",
]

SNIFF_BYTES: Final = 64 * 1024  # what sniff() needs to decide; the API reads this much synchronously
MAX_LINE_CHARS: Final = 64 * 1024  # a physical line longer than this is not a phone list
MAX_ROW_LINES: Final = 100  # a row over more lines than this has an unclosed quote
MAX_BYTES: Final = 100 * 1024 * 1024  # default bound on the bytes read (MAX_CSV_BYTES)
MAX_LINES: Final = 2_001_000  # default bound on physical lines, blank ones included (MAX_CSV_LINES)
SAMPLE_ROWS: Final = 200  # rows of the head used to sniff the delimiter and the phone column
_BINARY_RATIO: Final = 0.10  # share of control / undecodable characters that makes a file "binary"

# error codes (stable: the API passes them on to the client)
EMPTY_FILE: Final = "EMPTY_FILE"
BINARY_FILE: Final = "BINARY_FILE"
INVALID_ENCODING: Final = "INVALID_ENCODING"
NO_PHONE_COLUMN: Final = "NO_PHONE_COLUMN"
AMBIGUOUS_PHONE_COLUMN: Final = "AMBIGUOUS_PHONE_COLUMN"
TOO_MANY_ROWS: Final = "TOO_MANY_ROWS"
TOO_MANY_LINES: Final = "TOO_MANY_LINES"
FILE_TOO_LARGE: Final = "FILE_TOO_LARGE"
ROW_TOO_LONG: Final = "ROW_TOO_LONG"
MALFORMED_CSV: Final = "MALFORMED_CSV"


class CsvError(ValueError):
    """The file cannot be imported. ``code`` is one of the constants above; ``line`` is 1-based."""

    def __init__(self, code: str, message: str, line: int | None = None) -> None:
        self.code = code
        self.message = message
        self.line = line
        super().__init__(f"{message} (line {line})" if line is not None else message)


@dataclass(frozen=True)
class CsvInfo:
    """What the head of a file says about all of it."""

    encoding: str  # "utf-8", "utf-8-sig" (BOM), "utf-16" or "utf-32" (BOM)
    delimiter: str | None  # None: a single column without delimiter
    has_header: bool
    phone_column: int  # 0-based index
    phone_header: str | None  # the header cell of the phone column, when there is a header
    columns: int  # the usual number of columns
    sample: tuple[str, ...]  # the first few phone values (for a preview)


# Header names of a phone column, compared after casefolding and dropping everything that is not a
# letter or digit ("Mobile No.", "phone_number", "Cell #" all match). Lower tier wins; two columns of
# the same best tier are ambiguous.
_HEADER_TIERS: Final[tuple[frozenset[str], ...]] = (
    frozenset({
        "phone", "phonenumber", "phoneno", "phonenum", "mobile", "mobilenumber", "mobileno", "mobilenum",
        "msisdn", "cell", "cellphone", "cellnumber", "cellno", "number", "telephone", "telephonenumber",
        "tel", "telno", "contactnumber", "contactno", "mob", "mobno", "fon", "phonenumbers",
        # Urdu: phone, number, mobile, phone number, mobile number
        "فون", "نمبر", "موبائل", "فوننمبر", "موبائلنمبر",
    }),
    frozenset({"contact", "whatsapp", "whatsappnumber", "whatsappno", "landline", "ptcl", "msisdns"}),
)

_BOMS: Final[tuple[tuple[bytes, str, str], ...]] = (
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)

_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"PK\x03\x04", "an Excel workbook or a zip archive, not a CSV: save it as \"CSV UTF-8\""),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook, not a CSV: save it as \"CSV UTF-8\""),
    (b"%PDF", "a PDF document, not a CSV"),
    (b"\x89PNG", "an image, not a CSV"),
    (b"\xff\xd8\xff", "an image, not a CSV"),
    (b"\x1f\x8b", "a gzip archive, not a CSV"),
)

# characters no text file contains: C0 controls other than tab / line ends / form feed, DEL, and
# the surrogates that stand for undecodable bytes (errors="surrogateescape")
_NON_TEXT = re.compile("[\x00-\x08\x0e-\x1f\x7f\udc80-\udcff]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_NOT_ALNUM = re.compile(r"[\W_]+")
_NUMBERISH = re.compile(r"\s*\+?[\d\s().\-/]*\d[\d\s().\-/]*(?:[.,]\d*)?(?:[eE][+-]?\d+)?\s*")
_SCIENTIFIC = re.compile(r"\s*[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+\s*")
_SINGLE_COLUMN = "\x1f"  # the csv module needs a delimiter; this one never survives the text check
_CANDIDATES: Final = (",", ";", "\t")


def sniff(first_bytes: bytes, *, complete: bool | None = None,
          phone_column: str | int | None = None) -> CsvInfo:
    """Decide encoding, delimiter, header and phone column from the head of a file.

    ``first_bytes`` is the start of the upload (``SNIFF_BYTES`` is enough); ``complete`` says it is the
    whole file (default: it is shorter than ``SNIFF_BYTES``). ``phone_column`` forces the column, by
    header name or 0-based index. Raises ``CsvError`` (EMPTY_FILE, BINARY_FILE, INVALID_ENCODING,
    NO_PHONE_COLUMN, AMBIGUOUS_PHONE_COLUMN, ROW_TOO_LONG, MALFORMED_CSV).
    """
    if complete is None:
        complete = len(first_bytes) < SNIFF_BYTES
    encoding, head_codec, body = _detect_encoding(first_bytes)
    text = _decode_head(body, head_codec, complete)
    if not text.strip():
        raise CsvError(EMPTY_FILE, "the file is empty")
    _check_text(text)
    lines = list(io.StringIO(text, newline=""))
    if not complete:
        lines.pop()  # the last line may be cut; the stream reads it whole later
        if not lines:
            raise CsvError(ROW_TOO_LONG, f"the first line is longer than {len(first_bytes)} bytes", 1)
    sample = lines[: SAMPLE_ROWS * 2]
    delimiter = _sniff_delimiter(sample)
    rows = [row for row in _parse(sample, delimiter) if _has_content(row)][:SAMPLE_ROWS]
    if not rows:
        raise CsvError(EMPTY_FILE, "the file has no rows")
    column, has_header = _find_phone_column(rows, phone_column)
    data = rows[1:] if has_header else rows
    if not data and complete:
        raise CsvError(EMPTY_FILE, "the file has a header but no data rows")
    widths = [len(row) for row in rows]
    return CsvInfo(
        encoding=encoding,
        delimiter=delimiter,
        has_header=has_header,
        phone_column=column,
        phone_header=rows[0][column].strip() if has_header else None,
        columns=max(set(widths), key=widths.count),
        sample=tuple(row[column] if column < len(row) else "" for row in data[:5]),
    )


class PhoneCsv:
    """A phone list being read: ``info`` from the head, then iterate for ``(line_no, raw_value)``.

    Memory stays constant whatever the file size: the stream is decoded in small chunks and one row
    is held at a time. Iterating raises ``CsvError`` on the first bad line (undecodable byte, NUL,
    a line longer than ``max_line_chars``), past ``max_bytes`` bytes (FILE_TOO_LARGE) or
    ``max_lines`` physical lines (TOO_MANY_LINES), after ``max_rows`` data rows (TOO_MANY_ROWS), and
    at the end when there was no data row at all (EMPTY_FILE). Rows with nothing in any cell are
    skipped; a row with other cells but an empty phone cell is yielded with ``""``.
    """

    def __init__(self, fileobj: BinaryIO, *, max_rows: int | None = None,
                 phone_column: str | int | None = None, max_line_chars: int = MAX_LINE_CHARS,
                 max_bytes: int = MAX_BYTES, max_lines: int = MAX_LINES) -> None:
        self._file = fileobj
        self._max_rows = max_rows
        self._max_line_chars = max_line_chars
        self._max_bytes = max_bytes
        self._max_lines = max_lines
        self._line_no = 0
        self._head = _read_exactly(fileobj, min(SNIFF_BYTES, max_bytes + 1))
        if len(self._head) > max_bytes:
            raise CsvError(FILE_TOO_LARGE, f"the file is larger than {max_bytes} bytes")
        self.info = sniff(self._head, complete=len(self._head) < SNIFF_BYTES, phone_column=phone_column)
        self.rows_read = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        info = self.info
        column = info.phone_column
        max_rows = self._max_rows
        reader = csv.reader(self._lines(), delimiter=info.delimiter or _SINGLE_COLUMN, strict=False)
        skip_header = info.has_header
        start = 1
        count = 0
        try:
            for row in reader:
                line_no = start
                start = self._line_no + 1
                if start - line_no > MAX_ROW_LINES:
                    raise CsvError(ROW_TOO_LONG, f"a row spans more than {MAX_ROW_LINES} lines "
                                                 "(an unclosed quote?)", line_no)
                value = row[column] if column < len(row) else ""
                if not value.strip() and not _has_content(row):
                    continue
                if skip_header:
                    skip_header = False
                    continue
                count += 1
                if max_rows is not None and count > max_rows:
                    raise CsvError(TOO_MANY_ROWS, f"the file has more than {max_rows} rows", line_no)
                self.rows_read = count
                yield line_no, value
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise CsvError(ROW_TOO_LONG, "a row is too long (an unclosed quote?)", self._line_no) from None
            raise CsvError(MALFORMED_CSV, f"the file is not a valid CSV: {exc}", self._line_no) from None
        if count == 0:
            raise CsvError(EMPTY_FILE, "the file has no data rows")

    def _lines(self) -> Iterator[str]:
        """Physical lines (ending kept) of the decoded stream, each checked; counts ``_line_no``."""
        raw = io.BufferedReader(_Prefixed(self._head, self._file, self._too_large), buffer_size=SNIFF_BYTES)
        strict = not self.info.encoding.startswith("utf-8")
        text = io.TextIOWrapper(raw, encoding=self.info.encoding, newline="",
                                errors="strict" if strict else "surrogateescape")
        readline = text.readline
        limit = self._max_line_chars
        max_lines = self._max_lines
        undecodable = _UNDECODABLE.search
        while True:
            try:
                line = readline(limit + 1)
            except UnicodeDecodeError:
                raise CsvError(INVALID_ENCODING, f"the file is not valid {self.info.encoding.upper()}",
                               self._line_no + 1) from None
            if not line:
                return
            self._line_no += 1
            if self._line_no > max_lines:
                raise CsvError(TOO_MANY_LINES, f"the file has more than {max_lines} lines "
                                               "(blank lines count)", self._line_no)
            if len(line) > limit and line[-1] not in "\r\n":
                raise CsvError(ROW_TOO_LONG, f"a line is longer than {limit} characters", self._line_no)
            if "\x00" in line:
                raise CsvError(BINARY_FILE, "the file contains NUL bytes: it is not a text file", self._line_no)
            if not line.isascii():
                bad = undecodable(line)
                if bad is not None:
                    raise CsvError(INVALID_ENCODING, _not_utf8(bad.group()), self._line_no)
            yield line

    def _too_large(self, size: int) -> None:
        if size > self._max_bytes:
            raise CsvError(FILE_TOO_LARGE, f"the file is larger than {self._max_bytes} bytes", self._line_no + 1)


def read_phone_numbers(fileobj: BinaryIO, *, max_rows: int | None = None,
                       phone_column: str | int | None = None, max_bytes: int = MAX_BYTES,
                       max_lines: int = MAX_LINES) -> Iterator[tuple[int, str]]:
    """Shortcut: ``iter(PhoneCsv(fileobj, ...))``."""
    return iter(PhoneCsv(fileobj, max_rows=max_rows, phone_column=phone_column, max_bytes=max_bytes,
                         max_lines=max_lines))


# -- the pieces ------------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """The bytes already read for sniffing, then the rest of the file (which need not seek);
    ``check(total)`` sees the running byte count before the new bytes are handed on."""

    def __init__(self, head: bytes, rest: BinaryIO, check: Callable[[int], None]) -> None:
        self._head = memoryview(head)
        self._rest = rest
        self._check = check
        self._total = len(head)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        self._total += len(data)
        self._check(self._total)
        buffer[: len(data)] = data
        return len(data)


def _read_exactly(fileobj: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = fileobj.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _detect_encoding(data: bytes) -> tuple[str, str, bytes]:
    """(codec for the stream, codec for the head without its BOM, the head without its BOM)."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise CsvError(BINARY_FILE, f"the file is {what}")
    for bom, encoding, head_codec in _BOMS:
        if data.startswith(bom):
            return encoding, head_codec, data[len(bom):]
    head = data[:512]
    if len(head) >= 8 and (head[1::2].count(0) * 4 >= len(head) * 3 // 2
                           or head[0::2].count(0) * 4 >= len(head) * 3 // 2):
        raise CsvError(INVALID_ENCODING, "the file looks like UTF-16 without a byte order mark: "
                                         "save it as \"CSV UTF-8\"", 1)
    return "utf-8", "utf-8", data


def _decode_head(body: bytes, codec: str, complete: bool) -> str:
    if codec == "utf-8":
        decoder = codecs.getincrementaldecoder(codec)(errors="surrogateescape")
        return decoder.decode(body, final=complete)
    try:
        return codecs.getincrementaldecoder(codec)(errors="strict").decode(body, final=complete)
    except UnicodeDecodeError as exc:
        line = _count_lines(body[: exc.start].decode(codec, errors="replace")) + 1
        raise CsvError(INVALID_ENCODING, f"the file is not valid {codec.upper()[:6]}", line) from None


def _count_lines(text: str) -> int:
    """Line breaks as the stream counts them: CRLF, LF and CR each end one line."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _not_utf8(char: str) -> str:
    byte = ord(char) - 0xDC00
    return (f"the file is not UTF-8 (undecodable byte 0x{byte:02X}): save it as \"CSV UTF-8\" "
            "or UTF-16 with a byte order mark")


def _check_text(text: str) -> None:
    """Refuse binary content and name the line of the first undecodable byte."""
    non_text = _NON_TEXT.findall(text[:SNIFF_BYTES])
    if "\x00" in text or len(non_text) > _BINARY_RATIO * min(len(text), SNIFF_BYTES):
        first = text.find("\x00")
        line = _count_lines(text[:first]) + 1 if first >= 0 else None
        raise CsvError(BINARY_FILE, "the file is not a text file (binary content)", line)
    bad = _UNDECODABLE.search(text)
    if bad is not None:
        raise CsvError(INVALID_ENCODING, _not_utf8(bad.group()), _count_lines(text[: bad.start()]) + 1)


def _parse(lines: Iterable[str], delimiter: str | None) -> list[list[str]]:
    try:
        return list(csv.reader(lines, delimiter=delimiter or _SINGLE_COLUMN, strict=False))
    except csv.Error as exc:
        if "field limit" in str(exc):
            raise CsvError(ROW_TOO_LONG, "a row is too long (an unclosed quote?)") from None
        raise CsvError(MALFORMED_CSV, f"the file is not a valid CSV: {exc}") from None


def _has_content(row: list[str]) -> bool:
    return any(cell.strip() for cell in row)


def _sniff_delimiter(lines: list[str]) -> str | None:
    """The candidate that splits the sample into the same number (> 1) of columns most consistently."""
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for preference, delimiter in enumerate(_CANDIDATES):
        if not any(delimiter in line for line in lines):
            continue
        try:
            rows = [row for row in csv.reader(lines, delimiter=delimiter, strict=False) if _has_content(row)]
        except csv.Error:
            continue
        if not rows:
            continue
        widths = [len(row) for row in rows]
        mode = max(set(widths), key=widths.count)
        if mode < 2:
            continue
        consistency = widths.count(mode) / len(widths)
        if consistency < 0.6:
            continue
        score = (consistency, mode, -preference)
        if best is None or score > best:
            best, chosen = score, delimiter
    return chosen


def _header_key(cell: str) -> str:
    return _NOT_ALNUM.sub("", cell.casefold())


def _header_tier(cell: str) -> int | None:
    key = _header_key(cell)
    if not key:
        return None
    for candidate in (key, key.rstrip("0123456789"), key.removesuffix("s")):
        for tier, names in enumerate(_HEADER_TIERS):
            if candidate in names:
                return tier
    return None


def _is_number_like(cell: str) -> bool:
    return _NUMBERISH.fullmatch(cell) is not None


def _is_phone_like(cell: str) -> bool:
    if _NUMBERISH.fullmatch(cell) is None:
        return False
    if _SCIENTIFIC.fullmatch(cell) is not None:
        return True
    digits = sum(c.isdigit() for c in cell)
    return 7 <= digits <= 17


def _find_phone_column(rows: list[list[str]], forced: str | int | None) -> tuple[int, bool]:
    """(index, first row is a header)."""
    first = rows[0]
    width = max(len(row) for row in rows)
    if isinstance(forced, int):
        if not 0 <= forced < width:
            raise CsvError(NO_PHONE_COLUMN, f"the file has no column {forced + 1}")
        return forced, not _is_number_like(first[forced]) if forced < len(first) else True
    if isinstance(forced, str):
        wanted = _header_key(forced)
        for index, cell in enumerate(first):
            if _header_key(cell) == wanted:
                return index, True
        raise CsvError(NO_PHONE_COLUMN, f"the file has no column named {forced!r}")

    named: dict[int, list[int]] = {}
    for index, cell in enumerate(first):
        tier = _header_tier(cell)
        if tier is not None:
            named.setdefault(tier, []).append(index)
    if named:
        indexes = named[min(named)]
        if len(indexes) > 1:
            names = ", ".join(repr(first[i].strip()) for i in indexes)
            raise CsvError(AMBIGUOUS_PHONE_COLUMN, f"several columns could hold the phone number ({names}): "
                                                   "keep one, or name the one to call \"phone\"")
        return indexes[0], True

    if width == 1:
        return 0, not _is_number_like(first[0]) if first else True
    data = rows[1:] or rows
    candidates = []
    for index in range(width):
        cells = [row[index] for row in data if index < len(row) and row[index].strip()]
        if cells and sum(map(_is_phone_like, cells)) * 2 >= len(cells):
            candidates.append(index)
    if not candidates:
        raise CsvError(NO_PHONE_COLUMN, "no column holds phone numbers: name the column \"phone\"")
    if len(candidates) > 1:
        raise CsvError(AMBIGUOUS_PHONE_COLUMN, f"columns {', '.join(str(i + 1) for i in candidates)} all hold "
                                               "phone numbers: keep one, or add a header and name it \"phone\"")
    column = candidates[0]
    return column, column >= len(first) or not _is_number_like(first[column])
