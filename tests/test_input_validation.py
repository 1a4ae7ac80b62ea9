"""Bad input is refused at the edge: one line, the documented exit code, nothing written.

The class, not one example: control characters in any text, dates no calendar can count,
non-finite numbers, configs that are not config files, outputs into missing folders, names
that are paths, and the database's own refusals mapped to exit codes in one place.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, Workspace, dump_database, write_config

T = "2026-03-02T09:00:00+07:00"
PRODUCER = "HTX Cà phê Ia Le"


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def one_line_error(result: Result, code: int) -> str:
    """The result failed with ``code`` and said so in one ``error:`` line, no traceback."""
    assert result.code == code, str(result)
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, str(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, str(result)
    return errors[0]


def register(ws: Workspace, *extra: str, product: str = "Cà phê bột") -> Result:
    return ws.run(
        "dossier", "register", "--product", product, "--producer", PRODUCER,
        "--commune", "Ia Le", *extra, user="lan", now=T,
    )  # fmt: skip


# --- text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "product", ["Cà phê\x07", "Cà\x1b[31mphê", "Cà phê\nbột", "Cà\u202ephê", "Cà\x7fphê"]
)
def test_control_characters_in_a_product_name_are_refused_with_exit_2(
    sqlite_workspace: Workspace, product: str
) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    line = one_line_error(register(ws, product=product), 2)
    assert "product" in line
    assert dump_database(ws.url) == before


def test_control_characters_in_reasons_notes_and_fields_are_refused(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    created = register(ws, "--json")
    assert created.code == 0, str(created)
    dossier_id = created.json()["id"]
    before = dump_database(ws.url)
    one_line_error(register(ws, "--set", "note=ghi\x1bchú"), 2)
    one_line_error(register(ws, "--group", "food\x00"[:-1] + "\x08"), 2)
    refused = ws.run(
        "dossier", "advance", dossier_id, "reject", "--reason", "lý do\x07", user="lan", now=T
    )
    assert "--reason" in one_line_error(refused, 2)
    assert dump_database(ws.url) == before


def test_an_import_cell_with_a_nul_byte_or_control_character_is_refused_on_every_database(
    workspace: Workspace,
) -> None:
    ws = workspace
    sheet = write_csv(
        ws.root / "nul.csv",
        ["product", "producer", "commune", "note"],
        [
            ["Cà phê\x00bột", PRODUCER, "Ia Le", ""],
            ["Cà phê", PRODUCER, "Ia Le", "ghi\x00chú"],
            ["Cà phê", PRODUCER, "Ia\x0bLe", ""],
        ],
    )
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), user="lan", now=T)
    one_line_error(result, 2)
    lines = [x for x in result.stderr.splitlines() if x.startswith("nul.csv:")]
    assert [x.split(":")[1] for x in lines] == ["2", "3", "4"], result.stderr
    assert dump_database(ws.url) == before


def test_the_database_refusing_a_value_is_a_usage_error_not_a_traceback(pg_url: str) -> None:
    """The one place that maps database errors: a NUL byte PostgreSQL refuses is exit 2."""
    import sqlalchemy as sa

    from ocop_workflow.errors import UsageError
    from ocop_workflow.store import Store

    store = Store(pg_url)
    try:
        with (
            pytest.raises(UsageError, match="the database refused a value"),
            store.write() as conn,
        ):
            conn.execute(sa.text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})
    finally:
        store.dispose()


# --- names that would be paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../evil/self", "../evil", "/etc/passwd", "ocop-1489\n", ".hidden", "a/b", ""]
)
def test_a_workflow_name_that_is_a_path_is_refused_before_any_file_is_read(
    sqlite_workspace: Workspace, name: str
) -> None:
    ws = sqlite_workspace
    evil = ws.root / "evil"
    evil.mkdir(exist_ok=True)
    (evil / "self.toml").write_text("this is [[ not even toml", encoding="utf-8")
    before = dump_database(ws.url)
    line = one_line_error(register(ws, "--workflow", name), 2)
    assert "workflow" in line
    shown = ws.run("workflow", "show", name)
    one_line_error(shown, 2)
    assert dump_database(ws.url) == before


def test_a_workflow_column_of_an_import_that_is_a_path_is_refused(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    sheet = write_csv(
        ws.root / "duong-dan.csv",
        ["product", "producer", "commune", "workflow"],
        [["Cà phê", PRODUCER, "Ia Le", "../../evil/self"]],
    )
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), user="lan", now=T)
    one_line_error(result, 2)
    assert any(x.startswith("duong-dan.csv:2:") for x in result.stderr.splitlines())
    assert dump_database(ws.url) == before


@pytest.mark.parametrize("dossier_id", ["IL-1\n", "../IL-1", "IL/1", "IL 1", "IL-1\x00"[:-1] + "!"])
def test_a_dossier_id_is_matched_whole(sqlite_workspace: Workspace, dossier_id: str) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    one_line_error(register(ws, "--id", dossier_id), 2)
    assert dump_database(ws.url) == before


# --- numbers and dates ---------------------------------------------------------------------------


def test_dates_no_calendar_can_count_and_non_finite_scores_are_refused_in_an_import(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    sheet = write_csv(
        ws.root / "so-lieu.csv",
        ["product", "producer", "commune", "state", "state_entered_at", "score", "valid_until"],
        [
            ["A", PRODUCER, "Ia Le", "promotion", "9999-12-31", "", ""],  # 2: future
            ["B", PRODUCER, "Ia Le", "promotion", "0001-01-01", "", ""],  # 3: no UTC instant
            ["C", PRODUCER, "Ia Le", "promotion", "2024-01-01", "nan", ""],  # 4
            ["D", PRODUCER, "Ia Le", "promotion", "2024-01-01", "inf", ""],  # 5
            ["E", PRODUCER, "Ia Le", "promotion", "2024-01-01", "", "9999-12-31"],  # 6
        ],
    )
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), "--json", user="records", now=T)
    assert result.code == 2, str(result)
    report = result.json()  # real JSON: no NaN anywhere
    assert [p.split(":")[1] for p in report["problems"]] == ["2", "3", "4", "5", "6"]
    assert "in the future" in report["problems"][0]
    assert "finite" in report["problems"][2]
    assert "out of range" in report["problems"][4]
    assert dump_database(ws.url) == before


@pytest.mark.parametrize("points", ["nan", "inf", "-inf"])
def test_a_non_finite_council_score_is_refused(sqlite_workspace: Workspace, points: str) -> None:
    ws = sqlite_workspace
    sheet = write_csv(
        ws.root / "eval.csv",
        ["id", "product", "producer", "commune", "group", "state"],
        [["OCOP-E-1", "Cà phê", PRODUCER, "Ia Le", "food", "evaluation_province"]],
    )
    ws.run("import", str(sheet), user="records", now=T, check=True)
    before = dump_database(ws.url)
    result = ws.run(
        "score", "OCOP-E-1", "--member", "m1", "--a", points, "--b", "20", "--c", "30",
        "--json", user="m1", now=T,
    )  # fmt: skip
    one_line_error(result, 2)
    assert dump_database(ws.url) == before


def test_json_output_stays_json_when_an_old_row_holds_nan(sqlite_workspace: Workspace) -> None:
    import sqlalchemy as sa

    ws = sqlite_workspace
    created = register(ws, "--json")
    dossier_id = created.json()["id"]
    engine = sa.create_engine(ws.url)
    with engine.begin() as conn:  # a row written before input was checked
        conn.execute(
            sa.text("UPDATE dossier SET data = :d WHERE id = :i"),
            {"d": '{"score": NaN}', "i": dossier_id},
        )
    engine.dispose()
    shown = ws.run("dossier", "show", dossier_id, "--json")
    assert shown.code == 0, str(shown)

    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} in JSON output")

    document = json.loads(shown.stdout, parse_constant=no_constants)
    assert document["data"]["score"] is None


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_a_non_finite_or_non_positive_sweep_interval_is_a_config_error(
    tmp_path: Path, value: str
) -> None:
    write_config(tmp_path, extra=f"\n[scheduler]\nsweep_interval_seconds = {value}\n")
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    line = one_line_error(ws.run("init"), 1)
    assert "scheduler.sweep_interval_seconds" in line


@pytest.mark.parametrize("config", ["/dev/zero", "/dev/null", "folder", "fifo", "huge.toml"])
def test_a_config_that_is_not_a_small_regular_file_is_refused(tmp_path: Path, config: str) -> None:
    import os

    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "huge.toml").write_text("# " + "x" * (2 << 20) + "\n", encoding="utf-8")
    path = config if config.startswith("/") else str(tmp_path / config)
    done = subprocess.run(
        [sys.executable, "-m", "ocop_workflow", "--config", path, "dossier", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("OCOP_")},
        cwd=tmp_path,
    )
    line = one_line_error(Result(done.returncode, done.stdout, done.stderr), 1)
    assert "config file" in line


# --- outputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("dossier", "list", "--format", "csv", "-o"),
        ("dossier", "list", "--format", "xlsx", "-o"),
        ("audit", "export", "-o"),
        ("report", "progress", "--year", "2026", "--format", "csv", "-o"),
        ("report", "html", "--year", "2026", "-o"),
        ("workflow", "diagram", "ocop-1489", "-o"),
    ],
)
def test_an_output_into_a_missing_folder_is_one_line_exit_2(
    sqlite_workspace: Workspace, args: tuple[str, ...]
) -> None:
    ws = sqlite_workspace
    target = ws.root / "khong-co" / "out.file"
    line = one_line_error(ws.run(*args, str(target), user="hung", now=T), 2)
    assert "does not exist" in line
    assert not target.parent.exists()


def test_a_failed_export_leaves_neither_a_partial_file_nor_a_temporary_one(tmp_path: Path) -> None:
    from ocop_workflow.outputs import atomic_output

    target = tmp_path / "dossiers.csv"
    target.write_text("the previous export\n", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half of the rows", encoding="utf-8")
        raise RuntimeError("the database went away")
    assert target.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dossiers.csv"]
    with atomic_output(target) as tmp:
        tmp.write_text("all the rows\n", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "all the rows\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dossiers.csv"]


def test_an_export_into_a_pipe_writes_into_it_and_leaves_it_a_pipe(
    sqlite_workspace: Workspace,
) -> None:
    import os
    import stat
    import threading

    ws = sqlite_workspace
    register(ws)
    fifo = ws.root / "to-the-script"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(
        target=lambda: received.append(fifo.read_text(encoding="utf-8-sig")), daemon=True
    )
    reader.start()
    result = ws.run("dossier", "list", "--format", "csv", "-o", str(fifo))
    reader.join(timeout=30)
    assert result.code == 0, str(result)
    assert "Cà phê bột" in received[0]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert sorted(p.name for p in ws.root.iterdir() if p.name.startswith(".to-the")) == []


def test_an_export_into_a_full_device_is_one_line_exit_2_and_the_device_stays(
    sqlite_workspace: Workspace,
) -> None:
    import stat

    ws = sqlite_workspace
    register(ws)
    line = one_line_error(ws.run("dossier", "list", "--format", "csv", "-o", "/dev/full"), 2)
    assert "/dev/full" in line
    assert stat.S_ISCHR(Path("/dev/full").lstat().st_mode)


def test_an_export_through_a_symlink_writes_the_linked_file_and_keeps_the_link(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    register(ws)
    shared = ws.root / "chia-se"
    shared.mkdir()
    real = shared / "ho-so.csv"
    real.write_text("the previous export\n", encoding="utf-8")
    link = ws.root / "ho-so.csv"
    link.symlink_to(real)
    result = ws.run("dossier", "list", "--format", "csv", "-o", str(link))
    assert result.code == 0, str(result)
    assert link.is_symlink() and link.resolve() == real
    assert "Cà phê bột" in real.read_text(encoding="utf-8-sig")
    assert [p.name for p in shared.iterdir()] == ["ho-so.csv"]


def test_a_written_export_is_complete_and_nothing_else_is_left_in_the_folder(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    register(ws)
    out = ws.root / "xuat"
    out.mkdir()
    result = ws.run("dossier", "list", "--format", "csv", "-o", str(out / "ds.csv"))
    assert result.code == 0, str(result)
    assert [p.name for p in out.iterdir()] == ["ds.csv"]
    assert "Cà phê bột" in (out / "ds.csv").read_text(encoding="utf-8-sig")


# --- concurrency ---------------------------------------------------------------------------------


def test_two_concurrent_imports_of_the_same_ids_one_wins_the_other_gets_exit_5(
    workspace: Workspace,
) -> None:
    ws = workspace
    rows = [[f"IL-C-{n:04d}", f"Sản phẩm {n}", PRODUCER, "Ia Le"] for n in range(1500)]
    sheet = write_csv(ws.root / "cung-ma.csv", ["id", "product", "producer", "commune"], rows)
    env = ws.env(OCOP_USER="lan", OCOP_NOW=T)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "ocop_workflow", "import", str(sheet)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ws.root,
        )
        for _ in range(2)
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        results.append(Result(run.returncode, out, err))
    codes = sorted(r.code for r in results)
    assert codes == [0, 5], [str(r) for r in results]
    loser = next(r for r in results if r.code == 5)
    assert "unexpected" not in loser.stderr and "Traceback" not in loser.stderr
    assert loser.stderr.splitlines()[-1].startswith("error: ")
    listed = ws.run("dossier", "list", "--json")
    assert len(listed.json()) == 1500
    assert ws.run("audit", "verify").code == 0


# --- numbers, dates and values on the command line -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("report", "progress", "--year", "99999"),
        ("report", "progress", "--year", "-1"),
        ("report", "html", "--year", "2026", "--weeks", "-3", "-o", "r.html"),
        ("audit", "export", "--since", "0001-01-01"),
        ("audit", "export", "--since", "9999-12-31T23:59:59-12:00"),
        ("dossier", "advance", "OCOP-X", "accept_idea", "--expect-version", "10" * 20),
        (
            *("dossier", "register", "--product", "Cà phê", "--producer", PRODUCER),
            *("--commune", "Ia Le", "--set", "producer_email=a@b.vn\nBcc: x@y.vn"),
        ),
    ],
)
def test_out_of_range_numbers_and_dates_on_the_command_line_are_one_line_exit_2(
    sqlite_workspace: Workspace, args: tuple[str, ...]
) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    line = one_line_error(ws.run(*args, user="hung", now=T), 2)
    assert "Missing option" not in line
    assert dump_database(ws.url) == before


def test_an_import_sheet_larger_than_the_cap_is_refused_before_it_is_read(
    sqlite_workspace: Workspace,
) -> None:
    from ocop_workflow.importer import MAX_IMPORT_BYTES

    ws = sqlite_workspace
    sheet = ws.root / "qua-lon.csv"
    with sheet.open("wb") as handle:
        handle.write(b"product,producer,commune\n")
        handle.truncate(MAX_IMPORT_BYTES + 1)  # sparse: no disk used
    before = dump_database(ws.url)
    line = one_line_error(ws.run("import", str(sheet), user="lan", now=T), 2)
    assert "at most 64 MiB" in line
    assert dump_database(ws.url) == before


def test_an_import_of_more_rows_than_the_cap_is_refused_and_writes_nothing(
    sqlite_workspace: Workspace,
) -> None:
    """All of an import's rows go in one transaction and each is a dossier for good: a sheet of
    more than ``MAX_IMPORT_ROWS`` rows (a producer's flood of junk ideas, or a migration left
    whole) is refused (exit 2) with nothing written; exactly that many is imported."""
    from ocop_workflow.importer import MAX_IMPORT_ROWS

    ws = sqlite_workspace
    row = "Mật ong,HTX Cà phê Ia Le,Ia Le\n"
    sheet = ws.root / "qua-nhieu.csv"
    sheet.write_text("product,producer,commune\n" + row * (MAX_IMPORT_ROWS + 1), encoding="utf-8")
    before = dump_database(ws.url)
    line = one_line_error(ws.run("import", str(sheet), user="lan", now=T), 2)
    assert f"more than {MAX_IMPORT_ROWS:,} rows" in line
    assert dump_database(ws.url) == before
    sheet.write_text("product,producer,commune\n" + row * MAX_IMPORT_ROWS, encoding="utf-8")
    done = ws.run("import", str(sheet), "--json", user="lan", now=T)
    assert done.code == 0, done
    assert done.json()["imported"] == MAX_IMPORT_ROWS


def test_an_import_with_a_taken_id_and_a_colon_in_its_file_name_is_exit_5(
    sqlite_workspace: Workspace,
) -> None:
    """The problems are sorted by their line, read past a file name that holds ':' itself."""
    ws = sqlite_workspace
    base = ("dossier", "register", "--producer", "HTX Cà phê Ia Le", "--commune", "Ia Le")
    ws.run(*base, "--product", "Cà phê", "--id", "IALE-9", user="lan", now=T, check=True)
    sheet = ws.root / "a:b.csv"
    sheet.write_text(
        "id,product,producer,commune\nIALE-8,Mật ong,HTX Cà phê Ia Le,Ia Le\n"
        "IALE-9,Trà,HTX Cà phê Ia Le,Ia Le\n",
        encoding="utf-8",
    )
    before = dump_database(ws.url)
    refused = ws.run("import", str(sheet), user="lan", now=T)
    assert refused.code == 5, refused
    assert "a:b.csv:3: id IALE-9 is taken" in refused.stderr
    assert dump_database(ws.url) == before
