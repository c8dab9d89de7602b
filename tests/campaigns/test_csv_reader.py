"""The campaign CSV reader: pure, fast, no database."""

from __future__ import annotations

import codecs
import io
import tracemalloc
from collections.abc import Iterator

import pytest

from campaigns.csv_reader import SNIFF_BYTES, CsvError, PhoneCsv, read_phone_numbers, sniff


def read(data: bytes, **kwargs: object) -> list[tuple[int, str]]:
    return list(read_phone_numbers(io.BytesIO(data), **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "expected"), [
    # header by name, comma, LF
    (b"phone\n03001234567\n03007654321\n", [(2, "03001234567"), (3, "03007654321")]),
    # UTF-8 BOM, CRLF, quoted cells with the delimiter inside
    (b"\xef\xbb\xbfname,phone\r\n\"Khan, Ali\",\"0300-1234567\"\r\nSara,3001234567\r\n",
     [(2, "0300-1234567"), (3, "3001234567")]),
    # semicolon, header name with spaces and punctuation, column not first
    (b"Name;City;Mobile No.\nAli;Lahore;03001234567\n", [(2, "03001234567")]),
    # tab
    (b"id\tMSISDN\n1\t923001234567\n2\t923007654321\n", [(2, "923001234567"), (3, "923007654321")]),
    # CR only (old Mac exports)
    (b"phone\r03001234567\r03007654321\r", [(2, "03001234567"), (3, "03007654321")]),
    # no header, one column, Excel damage kept as is for the normaliser
    (b"03001234567\n3001234567\n9.23001E+11\n", [(1, "03001234567"), (2, "3001234567"), (3, "9.23001E+11")]),
    # no header, the only column that looks like numbers
    (b"Ali,03001234567,Lahore\nSara,03007654321,Karachi\n", [(1, "03001234567"), (2, "03007654321")]),
    # header without a known name: the first row's phone cell is not number-like
    (b"Customer,Digits\nAli,03001234567\nSara,03007654321\n", [(2, "03001234567"), (3, "03007654321")]),
    # a line break inside quotes: the next row starts on its physical line
    (b"name,phone\n\"two\nlines\",03001234567\nx,03007654321\n", [(2, "03001234567"), (4, "03007654321")]),
    # blank lines and all-empty rows are skipped, an empty phone cell is kept (the importer rejects it)
    (b"name,phone\n\n,\nAli,\nSara,03001234567\n", [(4, ""), (5, "03001234567")]),
    # short rows
    (b"name,phone\nAli\nSara,03001234567\n", [(2, ""), (3, "03001234567")]),
    # Urdu header
    ("نام,فون نمبر\nعلی,03001234567\n".encode(), [(2, "03001234567")]),
    # UTF-16 with its BOM (Excel's "Unicode text"), tab-delimited
    (codecs.BOM_UTF16_LE + "name\tphone\r\nAli\t03001234567\r\n".encode("utf-16-le"), [(2, "03001234567")]),
    (codecs.BOM_UTF16_BE + "phone\n03001234567\n".encode("utf-16-be"), [(2, "03001234567")]),
    # a whatsapp column only counts when no better name is there
    (b"whatsapp,mobile\n03001111111,03002222222\n", [(2, "03002222222")]),
    # the header of a single column without any known name
    (b"Numbers to call\n03001234567\n", [(2, "03001234567")]),
])
def test_reads_phone_values_with_their_line(data: bytes, expected: list[tuple[int, str]]) -> None:
    assert read(data) == expected


@pytest.mark.parametrize(("data", "code", "line"), [
    (b"", "EMPTY_FILE", None),
    (b"  \r\n\n", "EMPTY_FILE", None),
    (b"\xef\xbb\xbf", "EMPTY_FILE", None),
    (b"phone\n", "EMPTY_FILE", None),
    (b"name,phone\r\n,\r\n", "EMPTY_FILE", None),
    (b"phone\n03001234567\nJos\xe9 03001234567\n", "INVALID_ENCODING", 3),
    (b"phone\n\xff\xfe03001234567\n", "INVALID_ENCODING", 2),
    ("phone\n03001234567\n".encode("utf-16-le"), "INVALID_ENCODING", 1),  # no BOM
    (b"phone\n0300\x001234567\n", "BINARY_FILE", 2),
    (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00", "BINARY_FILE", None),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "BINARY_FILE", None),
    (bytes(range(1, 32)) * 20, "BINARY_FILE", None),
    (b"name,city\nAli,Lahore\nSara,Karachi\n", "NO_PHONE_COLUMN", None),
    (b"phone,mobile\n03001234567,03007654321\n", "AMBIGUOUS_PHONE_COLUMN", None),
    (b"03001234567,03007654321\n03001111111,03002222222\n", "AMBIGUOUS_PHONE_COLUMN", None),
    (b"phone\n" + b"3" * (SNIFF_BYTES + 10) + b"\n", "ROW_TOO_LONG", 2),
    (b"3" * (SNIFF_BYTES + 10), "ROW_TOO_LONG", 1),
])
def test_refuses_bad_files(data: bytes, code: str, line: int | None) -> None:
    with pytest.raises(CsvError) as caught:
        read(data)
    assert (caught.value.code, caught.value.line) == (code, line)
    assert caught.value.message


def test_errors_past_the_sniffed_head_name_their_line() -> None:
    rows = [b"03001234567"] * 20_000
    for index, bad, code in [(15_000, b"0300\xe91234567", "INVALID_ENCODING"),
                             (16_000, b"0300\x001234567", "BINARY_FILE"),
                             (17_000, b"\"unclosed quote", "ROW_TOO_LONG")]:
        data = b"\n".join(rows[:index] + [bad] + rows[index:])
        with pytest.raises(CsvError) as caught:
            read(data)
        assert (caught.value.code, caught.value.line) == (code, index + 1)


def test_too_many_rows() -> None:
    data = b"phone\n" + b"03001234567\n" * 11
    assert len(read(data, max_rows=11)) == 11
    with pytest.raises(CsvError) as caught:
        read(data, max_rows=10)
    assert (caught.value.code, caught.value.line) == ("TOO_MANY_ROWS", 12)


def test_phone_column_can_be_named_or_numbered() -> None:
    data = b"phone,mobile\n03001234567,03007654321\n"
    assert read(data, phone_column="Mobile") == [(2, "03007654321")]
    assert read(data, phone_column=0) == [(2, "03001234567")]
    with pytest.raises(CsvError, match="no column named"):
        read(data, phone_column="fax")


def test_sniff_answers_from_the_head_alone() -> None:
    head = (b"\xef\xbb\xbfName;Mobile\r\n" + b"Ali;03001234567\r\n" * 10_000)[:SNIFF_BYTES]
    info = sniff(head)
    assert (info.encoding, info.delimiter, info.has_header, info.phone_column, info.phone_header) == (
        "utf-8-sig", ";", True, 1, "Mobile")
    assert info.columns == 2 and info.sample[0] == "03001234567"
    single = sniff(b"03001234567\n03007654321")
    assert (single.delimiter, single.has_header, single.phone_column) == (None, False, 0)
    with pytest.raises(CsvError) as caught:
        sniff(b"Jos\xe9,03001234567\n")
    assert caught.value.code == "INVALID_ENCODING"


def test_sniff_does_not_choke_on_a_character_cut_at_the_end_of_the_head() -> None:
    head = ("phone,name\n" + "03001234567,علی\n" * 5000).encode()[:SNIFF_BYTES]
    assert sniff(head).phone_column == 0


def test_stream_need_not_be_seekable() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = self._data.read(min(len(buffer), 1000))
            buffer[: len(chunk)] = chunk
            return len(chunk)

        def seekable(self) -> bool:
            return False

    data = b"phone\n" + b"03001234567\n" * 50_000
    reader = PhoneCsv(Pipe(data))  # type: ignore[arg-type]
    assert sum(1 for _ in reader) == 50_000


class _Generated(io.RawIOBase):
    """A large CSV produced on the fly, so the test itself holds no copy of it."""

    def __init__(self, rows: int) -> None:
        self._rows = self._lines(rows)
        self._pending = b""

    @staticmethod
    def _lines(rows: int) -> Iterator[bytes]:
        yield b"name,phone,city\r\n"
        for i in range(rows):
            yield f"Customer {i},\"0300{i % 10_000_000:07d}\",Lahore\r\n".encode()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while len(self._pending) < len(buffer):
            chunk = next(self._rows, b"")
            if not chunk:
                break
            self._pending += chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def test_200k_rows_in_constant_memory() -> None:
    rows = 200_000
    tracemalloc.start()
    try:
        count = 0
        last = (0, "")
        for item in PhoneCsv(io.BufferedReader(_Generated(rows))):  # type: ignore[arg-type]
            count += 1
            last = item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    assert last == (rows + 1, f"0300{rows - 1:07d}")
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"


# -- bounds: bytes and physical lines, counted before any parsing -----------------------------


class _Counting(io.RawIOBase):
    """A stream that says how much of it was read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    @property
    def consumed(self) -> int:
        return self._data.tell()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("blank", [b"\n", b"\r\n", b"\r", b" \n", b",,\n"])
def test_blank_lines_count_towards_the_line_bound(blank: bytes) -> None:
    """The issue: blank rows were skipped before any limit counted, so a file of newlines was read to
    its end. Now the reader stops at ``max_lines`` physical lines, far before the end of the file."""
    data = b"phone,x\n03001234567,a\n" + blank * 1_000_000
    stream = _Counting(data)
    with pytest.raises(CsvError) as caught:
        for _ in PhoneCsv(stream, max_rows=10, max_lines=5000):  # type: ignore[arg-type]
            pass
    assert (caught.value.code, caught.value.line) == ("TOO_MANY_LINES", 5001)
    assert stream.consumed < 5001 * len(blank) + 2 * SNIFF_BYTES + 64


def test_a_file_at_the_line_bound_is_read_whole() -> None:
    data = b"phone\n" + b"03001234567\n" * 3 + b"\n" * 96
    assert len(read(data, max_lines=100)) == 3
    with pytest.raises(CsvError, match="more than 99 lines"):
        read(data, max_lines=99)


def test_the_default_bounds_stop_a_file_of_newlines() -> None:
    from campaigns.csv_reader import MAX_LINES

    data = b"phone\n03001234567\n" + b"\n" * (MAX_LINES + 1_000_000)
    stream = _Counting(data)
    with pytest.raises(CsvError) as caught:
        for _ in PhoneCsv(stream):  # type: ignore[arg-type]
            pass
    assert caught.value.code == "TOO_MANY_LINES" and caught.value.line == MAX_LINES + 1
    assert stream.consumed < len(data)


def test_bytes_past_the_bound_are_never_read() -> None:
    data = b"phone\n" + b"03001234567\n" * 100_000  # 1.2 MB
    stream = _Counting(data)
    with pytest.raises(CsvError) as caught:
        for _ in PhoneCsv(stream, max_bytes=200_000):  # type: ignore[arg-type]
            pass
    assert caught.value.code == "FILE_TOO_LARGE"
    assert stream.consumed <= 200_000 + 2 * SNIFF_BYTES
    assert len(read(data, max_bytes=len(data))) == 100_000


def test_a_head_past_the_byte_bound_is_refused_at_once() -> None:
    with pytest.raises(CsvError) as caught:
        PhoneCsv(io.BytesIO(b"phone\n" + b"03001234567\n" * 100), max_bytes=500)  # type: ignore[arg-type]
    assert caught.value.code == "FILE_TOO_LARGE"
    assert len(read(b"phone\n03001234567\n", max_bytes=18)) == 1
