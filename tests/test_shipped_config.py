"""The shipped config.toml is the README's config: its examples run against it as written."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from conftest import ROOT, Workspace

from ocop_workflow.config import load_config
from ocop_workflow.demo import TARGETS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def shipped_workspace(tmp_path: Path) -> Workspace:
    """The shipped config as it is, copied alone (the workflows ship with the package)."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    return ws


def test_every_user_the_readme_acts_as_is_in_the_shipped_config() -> None:
    config = load_config(ROOT / "config.toml", {})
    named = set(re.findall(r"--as ([a-z_0-9]+)", README))
    named |= set(re.findall(r"--member ([a-z_0-9]+)", README))
    assert named and named <= set(config.users), named - set(config.users)


def test_the_shipped_targets_are_the_seed_plan_the_demo_rehearses() -> None:
    config = load_config(ROOT / "config.toml", {})
    assert config.targets[2020] == TARGETS


def test_the_readme_scoring_example_runs_against_the_shipped_config(tmp_path: Path) -> None:
    ws = shipped_workspace(tmp_path)
    sheet = tmp_path / "dang-danh-gia.csv"
    with sheet.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "product", "producer", "commune", "group", "state"])
        writer.writerow(
            [
                "OCOP-2026-0001",
                "Cà phê bột Ia Le",
                "HTX Cà phê Ia Le",
                "Ia Le",
                "beverages",
                "evaluation_province",
            ]
        )
    ws.run("--as", "records", "import", str(sheet), check=True)
    example = next(
        line
        for line in README.splitlines()
        if line.startswith("ocop --as chair score OCOP-2026-0001 --member m1")
    )
    args = re.findall(r'"[^"]*"|\S+', example)[1:]
    result = ws.run(*[a.strip('"') for a in args], "--json")
    assert result.code == 0, str(result)
    scoring = result.json()["scoring"]["province"]
    m1 = scoring["scores"]["m1"]
    assert m1["note"] == "Bao bì tốt" and m1["total"] == 74
    progress = ws.run("report", "progress", "--year", "2020", "--json")
    assert progress.code == 0, str(progress)
    rows = progress.json()["targets"]
    assert {t["metric"]: t["target"] for t in rows if t["target"] is not None} == TARGETS
