"""Open a CSV the way a customer does: in a real spreadsheet (LibreOffice Calc, headless), saved as
xlsx, then read back with openpyxl to see which cells became formulas.

LibreOffice is a system package (Debian: ``libreoffice-calc-nogui``; ``.ci/run`` installs it). A
machine without it fails these tests with that instruction: never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest

# LibreOffice's CSV import options (the "Text Import" dialog): separators (44 comma, 59 semicolon,
# 9 tab), text delimiter 34 ("), charset 76 (UTF-8), first line 1, no column formats, language 0,
# quoted fields as text false, detect special numbers true, then three export-only tokens, and
# token 11 "trim spaces". Three ways a customer may open the file:
IMPORTS = {
    "comma": "CSV:44,34,76,1,,0,false,true,false,false,false,-1",
    # Excel in locales with a decimal comma splits on ';' ; trimming turns " =1" into "=1"
    "semicolon-tab-trimmed": "CSV:44/59/9,34,76,1,,0,false,true,false,false,true,-1",
    "semicolon-only": "CSV:59,34,76,1,,0,false,true,false,false,true,-1",
}


def soffice() -> str:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found is None:
        pytest.fail("LibreOffice is needed to check spreadsheet safety: "
                    "apt-get install -y --no-install-recommends libreoffice-calc-nogui (see .ci/run)")
    return found


def formulas(csv_path: Path, import_options: str, work: Path) -> list[str]:
    """Every cell LibreOffice made a formula when it opened ``csv_path`` with ``import_options``."""
    out = work / f"out-{csv_path.stem}-{abs(hash(import_options))}"
    out.mkdir(parents=True, exist_ok=True)
    profile = (work / "lo-profile").resolve()
    result = subprocess.run(
        [soffice(), "--headless", "--norestore", "--nolockcheck", f"-env:UserInstallation=file://{profile}",
         f"--infilter={import_options}", "--convert-to", "xlsx", "--outdir", str(out), str(csv_path)],
        capture_output=True, text=True, timeout=180)
    xlsx = out / f"{csv_path.stem}.xlsx"
    assert xlsx.exists(), (result.returncode, result.stdout, result.stderr)
    book = openpyxl.load_workbook(xlsx)  # not data_only: formulas stay formulas
    found = [str(cell.value) for sheet in book.worksheets for row in sheet.iter_rows() for cell in row
             if cell.data_type == "f" or (isinstance(cell.value, str) and cell.value.startswith("="))]
    cells = sum(1 for sheet in book.worksheets for row in sheet.iter_rows() for cell in row if cell.value is not None)
    assert cells, f"LibreOffice read nothing from {csv_path}"
    return found
