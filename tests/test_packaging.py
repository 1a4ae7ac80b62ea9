"""The rule files ship inside the package: an installed ``ocop`` finds them with no configuration.

They stay in the repository's top-level ``workflows/`` folder and are built into the wheel as
``ocop_workflow/workflows/*.toml``. A configured ``workflows_dir`` adds workflows or replaces a
shipped one by name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, WORKFLOWS, Workspace

SHIPPED = {"ocop-1048", "ocop-148", "ocop-1489"}
REGISTER_IN_IA_LE = (
    "dossier",
    "register",
    "--product",
    "Cà phê bột Ia Le",
    "--producer",
    "HTX Cà phê Ia Le",
    "--commune",
    "Ia Le",
    "--group",
    "food",
)


def copied_config(tmp_path: Path, extra: str = "") -> Workspace:
    """The shipped config.toml copied alone into an empty folder (what the Quick start does)."""
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    (tmp_path / "config.toml").write_text(text + extra, encoding="utf-8")
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    return ws


def test_a_config_copied_alone_finds_the_shipped_workflows(tmp_path: Path) -> None:
    ws = copied_config(tmp_path)
    listed = ws.run("workflow", "list", "--json", check=True).json()
    assert {w["name"] for w in listed} == SHIPPED
    done = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--group",
        "food",
        "--json",
        user="htx_iale",
    )
    assert done.code == 0, done
    assert done.json()["workflow"] == "ocop-1489"


def test_a_configured_folder_adds_workflows_and_overrides_a_shipped_one_by_name(
    tmp_path: Path,
) -> None:
    own = tmp_path / "quy-trinh"
    own.mkdir()
    shipped = (WORKFLOWS / "ocop-1489.toml").read_text(encoding="utf-8")
    pilot = shipped.replace('name = "ocop-1489"', 'name = "ocop-pilot"')
    assert pilot != shipped
    (own / "ocop-pilot.toml").write_text(pilot, encoding="utf-8")
    edited = shipped.replace('title = "', 'title = "(sửa) ', 1)
    assert edited != shipped
    (own / "ocop-1489.toml").write_text(edited, encoding="utf-8")
    ws = copied_config(tmp_path)
    text = ws.config.read_text(encoding="utf-8")
    ws.config.write_text(
        text.replace('# workflows_dir = "workflows"', 'workflows_dir = "quy-trinh"'),
        encoding="utf-8",
    )
    listed = {w["name"]: w for w in ws.run("workflow", "list", "--json", check=True).json()}
    assert set(listed) == SHIPPED | {"ocop-pilot"}
    assert listed["ocop-1489"]["title"].startswith("(sửa) ")
    assert ws.run("workflow", "validate").code == 0
    done = ws.run(
        "dossier",
        "register",
        "--product",
        "Mật ong",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--group",
        "food",
        "--workflow",
        "ocop-pilot",
        "--json",
        user="htx_iale",
    )
    assert done.code == 0, done


def test_a_configured_workflows_folder_that_does_not_exist_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    ws = copied_config(tmp_path)
    text = ws.config.read_text(encoding="utf-8")
    ws.config.write_text(
        text.replace('# workflows_dir = "workflows"', 'workflows_dir = "nope"'), encoding="utf-8"
    )
    done = ws.run("workflow", "list")
    assert done.code == 1
    assert "nope not found" in done.stderr


@pytest.mark.slow
def test_the_wheel_carries_every_module_and_the_rule_files_and_runs_installed(
    tmp_path: Path,
) -> None:
    """A real, non-editable install of the built wheel, away from the source tree."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "config.toml"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("ocop_workflow", "workflows"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(built), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = built.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "ocop_workflow").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    } | {f"ocop_workflow/workflows/{p.name}" for p in WORKFLOWS.glob("*.toml")}
    expected.add("ocop_workflow/starter/config.toml")
    assert expected <= names, sorted(expected - names)

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    office = tmp_path / "office"
    office.mkdir()
    shutil.copy2(ROOT / "config.toml", office / "config.toml")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    run = [sys.executable, "-m", "ocop_workflow"]
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ocop_workflow.definitions as d; "
            "print(d.__file__); print(d.packaged_workflows_dir())",
        ],
        env=env,
        cwd=office,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "ocop_workflow" / "workflows")
    subprocess.run([*run, "init"], env=env, cwd=office, check=True, capture_output=True)
    listed = subprocess.run(
        [*run, "workflow", "list", "--json"],
        env=env,
        cwd=office,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    workflows = json.loads(listed)
    assert {w["name"] for w in workflows} == SHIPPED
    assert all(w["file"].startswith(str(site)) for w in workflows), workflows
    example = subprocess.run(
        [*run, "config", "example"], env=env, cwd=office, check=True, capture_output=True, text=True
    ).stdout
    assert example == (ROOT / "config.toml").read_text(encoding="utf-8")


def test_init_without_a_config_says_how_to_get_one_and_the_example_works(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    done = ws.run("init")
    assert done.code == 1
    assert "ocop config example > config.toml" in done.stderr
    example = ws.run("config", "example", check=True).stdout
    assert example.lstrip().startswith("#")  # commented
    ws.config.write_text(example, encoding="utf-8")
    ws.run("init", check=True)
    done = ws.run(*REGISTER_IN_IA_LE, user="htx_iale")
    assert done.code == 0, done
