"""Tabular exports: CSV (UTF-8 with BOM, so spreadsheet programs show Vietnamese right) and XLSX.

Every text cell of every export (``dossier list``, ``audit export``, ``report progress``) goes
through :func:`neutralise`: a product named ``=HYPERLINK(…)`` or ``@SUM(…)`` is text to us but a
formula to a spreadsheet (OWASP "CSV injection"), run on the officer's machine when the file is
opened. Numbers stay numbers (a negative score is a number cell, not text starting with ``-``),
and XLSX text cells are typed as strings, never formulas. :func:`restore` undoes it exactly, so
``ocop import`` reads back what ``dossier list`` wrote.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

FORMATS = ("csv", "xlsx")


#: First characters that make a spreadsheet read a cell as a formula (or a DDE command).
FORMULA_START = frozenset("=+-@\t\r")


def neutralise(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: prefixed with ``'`` when it would run.

    Text already starting with ``'`` before such a character (or another ``'``) gets one more,
    so :func:`restore` is its exact inverse. Anything not text is returned as it is.
    """
    if isinstance(value, str) and value and _escaped(value):
        return "'" + value
    return value


def restore(text: str) -> str:
    """The text :func:`neutralise` was given (for importing a sheet we exported)."""
    if text[:1] == "'" and text[1:2] and (text[1] in FORMULA_START or text[1] == "'"):
        return text[1:]
    return text


def _escaped(text: str) -> bool:
    return text[0] in FORMULA_START or (
        text[0] == "'" and len(text) > 1 and (text[1] in FORMULA_START or text[1] == "'")
    )


def xlsx_row(sheet: Any, values: Iterable[Any]) -> list[Any]:
    """Cells for ``sheet.append``: text neutralised and typed as a string, never a formula
    (openpyxl would otherwise store any text starting with ``=`` as one)."""
    from openpyxl.cell.cell import Cell

    cells: list[Any] = []
    for value in values:
        if isinstance(value, str):
            cell = Cell(sheet, row=1, column=1, value=neutralise(value))
            cell.data_type = "s"
            cells.append(cell)
        else:
            cells.append(value)
    return cells


def flat(value: Any) -> Any:
    """A cell: nested data as JSON text, everything else as it is."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def write_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    output: Path | None,
    *,
    sheet: str = "ocop",
) -> int:
    """Write ``rows`` (only ``columns``, in order) as CSV or XLSX; returns the rows written."""
    if fmt not in FORMATS:
        raise UsageError(f"format '{fmt}': use one of {', '.join(FORMATS)}", fields=("format",))
    count = 0
    if fmt == "csv":
        handle = output.open("w", encoding="utf-8-sig", newline="") if output else sys.stdout
        try:
            if output is None:
                handle.write("\ufeff")  # the BOM spreadsheet programs need for UTF-8
            writer = csv.writer(handle)
            writer.writerow([neutralise(c) for c in columns])
            for row in rows:
                writer.writerow([neutralise(flat(row.get(c))) for c in columns])
                count += 1
        finally:
            if output:
                handle.close()
        return count
    if output is None:
        raise UsageError("an xlsx table needs an output file", fields=("output",))
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet[:31])
    ws.append(xlsx_row(ws, columns))
    for row in rows:
        ws.append(xlsx_row(ws, [flat(row.get(c)) for c in columns]))
        count += 1
    book.save(output)
    return count
