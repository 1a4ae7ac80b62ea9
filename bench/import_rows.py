"""How long ``ocop import`` takes for a 10,000-row CSV sheet (target: under 10 s).

Run it from the project folder::

    .venv/bin/python bench/import_rows.py [--rows 10000]

A scratch folder gets a config (SQLite file, the shipped workflows, one commune officer), ``ocop
init`` and a CSV of ``--rows`` new dossiers (product, producer, commune, group and one data field,
as an office's spreadsheet has them); ``ocop import`` runs as a real subprocess and is timed from
start to exit, with ``python -c pass`` timed beside it so that a loaded machine shows. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
[database]
url = "sqlite:///{db}"

[engine]
workflows_dir = "{workflows}"
default_workflow = "ocop-1489"

[clock]
allow_override = true

[users.lan]
name = "Nguyễn Thị Lan"
roles = ["commune_officer"]
communes = ["Ia Le"]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocop-bench-import-") as name:
        folder = Path(name)
        config = folder / "config.toml"
        config.write_text(
            CONFIG.format(db=folder / "ocop.db", workflows=ROOT / "workflows"), encoding="utf-8"
        )
        sheet = folder / "san-pham.csv"
        with sheet.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["product", "producer", "commune", "group", "producer_email"])
            for n in range(args.rows):
                writer.writerow(
                    [
                        f"Sản phẩm số {n} — cà phê Ia Le",
                        f"HTX Nông nghiệp số {n % 40}",
                        "Ia Le",
                        "food",
                        f"htx{n % 40}@example.vn",
                    ]
                )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
        env.update(OCOP_CONFIG=str(config), OCOP_USER="lan", OCOP_NOW="2026-03-02T09:00:00+07:00")
        ocop = [sys.executable, "-m", "ocop_workflow"]
        subprocess.run([*ocop, "init"], env=env, cwd=folder, check=True, capture_output=True)
        started = time.perf_counter()
        subprocess.run([*ocop, "import", str(sheet)], env=env, cwd=folder, check=True,
                       capture_output=True)  # fmt: skip
        import_s = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        python_s = time.perf_counter() - started
    figures = {
        "rows": args.rows,
        "import_s": round(import_s, 2),
        "rows_per_s": round(args.rows / import_s, 1),
        "python_s": round(python_s, 3),
        "load": round(os.getloadavg()[0], 2),
        "targets": {"import_s<10": import_s < 10},
    }
    print(f"ocop import of {args.rows:,} rows: {import_s:.2f} s ({figures['rows_per_s']:,}/s)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
