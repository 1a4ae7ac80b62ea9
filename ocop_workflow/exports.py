"""Tabular exports: CSV (UTF-8 with BOM, so spreadsheet programs show Vietnamese right) and XLSX."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

FORMATS = ("csv", "xlsx")


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
        raise UsageError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    count = 0
    if fmt == "csv":
        handle = output.open("w", encoding="utf-8-sig", newline="") if output else sys.stdout
        try:
            if output is None:
                handle.write("\ufeff")  # the BOM spreadsheet programs need for UTF-8
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([flat(row.get(c)) for c in columns])
                count += 1
        finally:
            if output:
                handle.close()
        return count
    if output is None:
        raise UsageError("--format xlsx needs -o FILE.xlsx")
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    ws = book.create_sheet(sheet[:31])
    ws.append(list(columns))
    for row in rows:
        ws.append([flat(row.get(c)) for c in columns])
        count += 1
    book.save(output)
    return count
