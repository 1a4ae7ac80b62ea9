"""Long operations show a progress bar on a terminal, and never in a pipe."""

from __future__ import annotations

import csv
import os
import pty
import subprocess
import sys

from conftest import Workspace


def _sheet(ws: Workspace, rows: int) -> str:
    path = ws.root / "nhieu-ho-so.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["product", "producer", "commune"])
        for n in range(rows):
            writer.writerow([f"Sản phẩm {n}", "HTX Cà phê Ia Le", "Ia Le"])
    return str(path)


def test_import_of_a_large_sheet_shows_a_progress_bar_on_a_terminal_only(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    sheet = _sheet(ws, 1500)
    parent, child = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ocop_workflow", "import", sheet, "--dry-run"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child,
            env=ws.env(OCOP_USER="hung"), cwd=ws.root, timeout=120,
        )
        os.close(child)
        child = -1
        seen = b""
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if child != -1:
            os.close(child)
        os.close(parent)
    assert done.returncode == 0
    text = seen.decode("utf-8", "replace")
    assert "checking rows" in text and "100%" in text
    piped = ws.run("import", sheet, "--dry-run", user="hung")
    assert piped.code == 0 and "checking rows" not in piped.stderr
