"""Long operations show a progress bar on a terminal, and never in a pipe."""

from __future__ import annotations

import csv
import os
import pty
import subprocess
import sys
import threading

import pytest
from conftest import Workspace

ROWS = 1500  # above the 1,000 items from which a bar is drawn


def _sheet(ws: Workspace, rows: int) -> str:
    path = ws.root / "nhieu-ho-so.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product", "producer", "commune"])
        for n in range(rows):
            writer.writerow([f"Sản phẩm {n}", "HTX Cà phê Ia Le", "Ia Le"])
    return str(path)


def _on_terminal(ws: Workspace, *args: str) -> tuple[int, str, bytes]:
    """Run ``ocop ARGS`` with stderr on a pseudo-terminal: (exit code, what the terminal showed,
    stdout). The terminal is read while the command runs, as a real one would be: a bar redraws
    often, and an unread terminal would block the writer."""
    parent, child = pty.openpty()
    seen: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # the child side closed: the command is done
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ocop_workflow", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=child,
            env=ws.env(OCOP_USER="hung"),
            cwd=ws.root,
            timeout=120,
        )
    finally:
        os.close(child)
        reader.join(timeout=10)
        os.close(parent)
    return done.returncode, b"".join(seen).decode("utf-8", "replace"), done.stdout


def test_import_of_a_large_sheet_shows_a_progress_bar_on_a_terminal_only(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    sheet = _sheet(ws, ROWS)
    code, terminal, _ = _on_terminal(ws, "import", sheet, "--dry-run")
    assert code == 0
    assert "checking rows" in terminal and "100%" in terminal
    piped = ws.run("import", sheet, "--dry-run", user="hung")
    assert piped.code == 0 and "checking rows" not in piped.stderr


@pytest.mark.slow(8)
def test_xlsx_import_and_exports_to_stdout_show_progress_bars_without_touching_the_output(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    ws.run("import", _sheet(ws, ROWS), user="hung", check=True)
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["product", "producer", "commune"])
    for n in range(ROWS):
        sheet.append([f"Sản phẩm mới {n}", "HTX Cà phê Ia Le", "Ia Le"])
    xlsx = ws.root / "ho-so-moi.xlsx"
    book.save(xlsx)

    code, terminal, _ = _on_terminal(ws, "import", str(xlsx), "--dry-run")
    assert code == 0 and "checking rows" in terminal and "100%" in terminal, terminal

    code, terminal, out = _on_terminal(ws, "dossier", "list", "--format", "csv")
    assert code == 0 and "exporting" in terminal and "100%" in terminal, terminal
    lines = out.decode("utf-8-sig").splitlines()
    assert len(lines) == ROWS + 1 and "exporting" not in out.decode("utf-8-sig")

    code, terminal, out = _on_terminal(ws, "audit", "export", "--format", "jsonl")
    assert code == 0 and "exporting" in terminal and "100%" in terminal, terminal
    assert len(out.decode("utf-8").splitlines()) == ROWS  # one register entry each

    code, terminal, _ = _on_terminal(ws, "audit", "verify")
    assert code == 0 and "verifying" in terminal and "100%" in terminal, terminal

    # a filtered export's bar counts what the filter keeps, and still ends at 100 %
    ws.run(
        "dossier",
        "register",
        "--product",
        "Mật ong Ia Phang",
        "--producer",
        "HTX Ia Phang",
        "--commune",
        "Ia Phang",
        user="hung",
        check=True,
    )
    code, terminal, out = _on_terminal(
        ws, "dossier", "list", "--format", "csv", "--commune", "Ia Le"
    )
    assert code == 0 and "100%" in terminal, terminal

    piped = ws.run("audit", "export")
    assert piped.code == 0 and "exporting" not in piped.stderr
