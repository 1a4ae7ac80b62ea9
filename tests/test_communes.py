"""A misspelt commune or dossier id is an error naming what was meant, never an empty answer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Workspace, dump_database, write_config

from ocop_workflow.clock import FixedClock
from ocop_workflow.communes import fold, suggestions
from ocop_workflow.config import load_config
from ocop_workflow.errors import NotFound
from ocop_workflow.service import Ocop

REGISTER = (
    "dossier",
    "register",
    "--product",
    "Cà phê bột",
    "--producer",
    "HTX Cà phê Ia Le",
    "--group",
    "food",
)
COMMUNES = '[communes]\nnames = ["Ia Le", "Ia Phang", "Ia Hrú", "Chư Pưh"]\n'


def listed_workspace(tmp_path: Path) -> Workspace:
    write_config(tmp_path, extra=COMMUNES)
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    ws.run("init", check=True)
    return ws


def test_names_match_without_diacritics_case_or_spaces() -> None:
    assert fold("Ia Lê") == fold("IA LE") == fold("IaLe") == fold("ia-le") == "iale"
    assert fold("Đắk Đoa") == "dakdoa"
    assert suggestions("Ia le", ["Ia Le", "Ia Phang"]) == ["Ia Le"]
    assert suggestions("Ia Phnag", ["Ia Le", "Ia Phang"]) == ["Ia Phang"]
    assert suggestions("Kon Tum", ["Ia Le", "Ia Phang"]) == []


def test_a_misspelt_commune_filter_is_not_found_with_the_commune_meant(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    ws.run(*REGISTER, "--commune", "Ia Le", user="htx_iale", check=True)
    for typo in ("Ia le", "Ia Lê", "IaLe"):
        done = ws.run("dossier", "list", "--commune", typo)
        assert done.code == 3, done
        assert done.stderr == (
            f"error: '{typo}' is not a known commune (did you mean 'Ia Le'?) — option --commune\n"
        )
    listed = ws.run("dossier", "list", "--commune", "Ia Le", "--json", check=True).json()
    assert len(listed) == 1


def test_a_producers_misspelt_commune_is_not_found_rather_than_a_permission_error(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    done = ws.run(*REGISTER, "--commune", "IaLe", user="htx_iale")
    assert done.code == 3, done
    assert "did you mean 'Ia Le'?" in done.stderr
    assert dump_database(ws.url) == before


def test_with_a_communes_list_an_unlisted_commune_is_refused_everywhere(tmp_path: Path) -> None:
    ws = listed_workspace(tmp_path)
    before = dump_database(ws.url)
    done = ws.run(*REGISTER, "--commune", "Ia Grai", user="hung")
    assert done.code == 3, done
    assert "not a known commune" in done.stderr and "Chư Pưh" in done.stderr  # the list
    assert (
        ws.run(*REGISTER, "--commune", "Chu Puh", user="hung")
        .stderr.strip()
        .endswith("(did you mean 'Chư Pưh'?) — option --commune")
    )
    assert ws.run("dossier", "list", "--commune", "Ia Grai").code == 3
    sheet = tmp_path / "import.csv"
    sheet.write_text("product,producer,commune,group\nTiêu,HTX Tiêu,Ia le,food\n", encoding="utf-8")
    imported = ws.run("import", str(sheet), user="hung")
    assert imported.code == 2, imported
    assert "import.csv:2:" in imported.stderr and "did you mean 'Ia Le'?" in imported.stderr
    assert dump_database(ws.url) == before
    assert ws.run(*REGISTER, "--commune", "Ia Hrú", user="hung").code == 0


def test_a_user_or_council_scope_outside_the_communes_list_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, extra='[communes]\nnames = ["Ia Lê", "Ia Phang"]\n')
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    done = ws.run("init")
    assert done.code == 1, done
    assert "config key 'users.lan.communes': 'Ia Le' is not in [communes] names" in done.stderr
    assert "(did you mean 'Ia Lê'?)" in done.stderr


def test_a_dossier_id_in_the_wrong_case_is_not_found_with_the_id_meant(
    workspace: Workspace,
) -> None:
    ws = workspace
    ws.run(*REGISTER, "--commune", "Ia Le", "--id", "OCOP-2026-0001", user="htx_iale", check=True)
    for args in (
        ("dossier", "show", "ocop-2026-0001"),
        ("dossier", "advance", "ocop-2026-0001", "accept_idea"),
    ):
        done = ws.run(*args, user="lan")
        assert done.code == 3, done
        assert "dossier ocop-2026-0001 not found (did you mean OCOP-2026-0001?)" in done.stderr
    assert "did you mean" not in ws.run("dossier", "show", "OCOP-2026-0999").stderr


def test_a_mistyped_id_is_answered_while_another_process_writes(
    sqlite_workspace: Workspace,
) -> None:
    """``dossier advance`` of an id that is not there answers from a read: it does not wait for
    the write lock another process holds (up to the busy timeout) to say "did you mean"."""
    import sqlite3
    import subprocess
    import sys

    ws = sqlite_workspace
    ws.run(*REGISTER, "--commune", "Ia Le", "--id", "OCOP-2026-0001", user="htx_iale", check=True)
    other = sqlite3.connect(ws.root / "ocop.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ocop_workflow", "dossier", "advance", "ocop-2026-0001",
             "accept_idea"],
            env={**ws.env(), "OCOP_USER": "lan"},
            cwd=ws.root, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("still waiting for the write lock")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert done.returncode == 3, done
    assert "dossier ocop-2026-0001 not found (did you mean OCOP-2026-0001?)" in done.stderr


@pytest.mark.parametrize("act", ["show", "advance"])
def test_the_server_does_not_hint_at_a_dossier_id_existence_must_not_leak(
    workspace: Workspace, act: str
) -> None:
    """A read and an act alike (an advance asks the row its transaction locks, not a read of
    its own), on both databases."""
    ws = workspace
    ws.run(*REGISTER, "--commune", "Ia Le", "--id", "OCOP-2026-0001", user="htx_iale", check=True)
    config = load_config(ws.config, ws.env())
    for conceal, message in (
        (False, "dossier ocop-2026-0001 not found (did you mean OCOP-2026-0001?)"),
        (True, "dossier ocop-2026-0001 not found"),
    ):
        ocop = Ocop(config, FixedClock(datetime(2026, 3, 2, tzinfo=UTC)), conceal=conceal)
        # lan reads some dossiers (a read before the act); minh reads them all (the act's own
        # transaction answers "not found", and must not hint either)
        for user in ("lan", "minh"):
            with pytest.raises(NotFound) as caught:
                if act == "show":
                    ocop.show(config.user(user), "ocop-2026-0001")
                else:
                    ocop.advance(config.user(user), "ocop-2026-0001", "accept_idea")
            assert caught.value.message == message, user
        ocop.store.dispose()


def test_a_misspelt_acting_user_names_the_user_meant(sqlite_workspace: Workspace) -> None:
    done = sqlite_workspace.run("--as", "Lan", "dossier", "list")
    assert done.code == 3
    assert "unknown user 'Lan'" in done.stderr and "(did you mean 'lan'?)" in done.stderr
    assert "did you mean" not in sqlite_workspace.run("--as", "nobody", "dossier", "list").stderr


def test_an_exports_count_is_of_the_dossiers_the_reader_may_see(workspace: Workspace) -> None:
    """The progress bar of `dossier list --format csv|xlsx` counts what the export writes: a
    commune officer's own commune, not the province (the total would tell them how many
    dossiers other communes hold)."""
    from ocop_workflow.views import DossierFilter

    ws = workspace
    for commune, user in (("Ia Le", "lan"), ("Ia Le", "lan"), ("Ia Phang", "tuan")):
        ws.run(*REGISTER, "--commune", commune, user=user, check=True)
    config = load_config(ws.config, ws.env())
    ocop = Ocop(config, FixedClock(datetime(2026, 3, 2, tzinfo=UTC)))
    for user, seen in (("lan", 2), ("tuan", 1), ("hung", 3)):
        reader = config.user(user)
        assert ocop.count_dossiers(reader, DossierFilter()) == seen, user
        assert len(list(ocop.iter_dossiers(reader, DossierFilter()))) == seen, user
    assert ocop.count_dossiers(None, DossierFilter(commune="Ia Le")) == 2
