"""``ocop import`` and the tabular exports of ``ocop dossier list``, through the real CLI.

An office moving from spreadsheets brings thousands of rows at once: the import must be quick, all
or nothing, say which line is wrong, and leave each dossier an audit trail that names the file and
line it came from. What ``dossier list --format xlsx`` writes, ``ocop import`` reads back into
another database unchanged.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, Workspace, dump_database, write_config

T_IMPORT = "2026-03-02T09:00:00+07:00"
T_LATER = "2026-06-15T10:00:00+07:00"

PRODUCER = "HTX Cà phê Ia Le"
#: The workflow fields of ocop-1489 (data keys that are not fields are structures: documents…).
FIELDS = (
    "stars",
    "score",
    "producer_email",
    "producer_phone",
    "note",
    "certificate_no",
    "decision_no",
    "certified_on",
    "valid_until",
    "certificate_stars",
)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def ok(ws: Workspace, *args: str, user: str | None = "hung", now: str = T_IMPORT) -> Any:
    """``ocop ARGS --json``: must succeed and print one JSON document."""
    result = ws.run(*args, "--json", user=user, now=now)
    assert result.code == 0, str(result)
    assert "Traceback" not in result.stderr
    return result.json()


def rejected_lines(result: Result, name: str, code: int = 2) -> list[str]:
    """A rejected import: exit 2 (5 when ids are only taken), the ``name:N: reason`` lines."""
    assert result.code == code, str(result)
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: "), result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith(f"{name}:")]


# --- 10,000 rows --------------------------------------------------------------------------------


@pytest.mark.slow(6)
def test_ten_thousand_rows_import_each_audited_with_its_file_and_line(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    rows = [
        [
            f"Sản phẩm số {n} — cà phê Ia Le",
            f"HTX Nông nghiệp số {n % 40}",
            "Ia Le",
            "food",
            f"htx{n % 40}@example.vn",
        ]
        for n in range(10_000)
    ]
    sheet = write_csv(
        ws.root / "san-pham-2026.csv",
        ["product", "producer", "commune", "group", "producer_email"],
        rows,
    )

    result = ws.run("import", str(sheet), "--json", user="lan", now=T_IMPORT)
    assert result.code == 0, str(result)
    report = result.json()
    assert (report["rows"], report["imported"], report["dry_run"]) == (10_000, 10_000, False)
    assert len(set(report["ids"])) == 10_000

    listed = ok(ws, "dossier", "list", user="lan")
    assert len(listed) == 10_000
    by_product = {d["product"]: d for d in listed}
    assert len(by_product) == 10_000
    assert {d["state"] for d in listed} == {"registration"}

    # every dossier's first entry is the import of its own line (line 1 is the header)
    trail = ws.root / "audit.jsonl"
    ws.run("audit", "export", "-o", str(trail), user="lan", now=T_IMPORT, check=True)
    first: dict[str, dict[str, Any]] = {}
    for line in trail.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["seq"] == 1:
            first[entry["dossier"]] = entry
    assert len(first) == 10_000
    for n, row in enumerate(rows):
        dossier = by_product[row[0]]
        entry = first[dossier["id"]]
        assert entry["trigger"] == "import"
        assert entry["actor"] == "lan"
        assert entry["reason"] == f"imported from san-pham-2026.csv line {n + 2}", entry
        assert entry["data"]["data"] == {"producer_email": row[4]}

    verified = ok(ws, "audit", "verify", user="lan")
    assert verified["ok"] is True, verified
    assert verified["dossiers_checked"] == 10_000
    # How fast (a 10,000-row sheet in under 10 s) is measured by bench/import_rows.py.


# --- bad rows: all or nothing -------------------------------------------------------------------


def test_three_bad_rows_change_nothing_and_each_is_named_with_its_line(
    workspace: Workspace,
) -> None:
    ws = workspace
    ok(
        ws,
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        "--group",
        "food",
    )
    sheet = write_csv(
        ws.root / "bad.csv",
        ["product", "producer", "commune", "group", "producer_email"],
        [
            ["Mật ong hoa cà phê", "THT ong Ia Le", "Ia Le", "food", "ong@example.vn"],  # 2
            ["", "HTX Hồ tiêu Ia Le", "Ia Le", "food", ""],  # 3: no product
            ["Hồ tiêu đen", "HTX Hồ tiêu Ia Le", "Ia Le", "food", "tieu@example.vn"],  # 4
            ["Chuối sấy", "HTX Chuối Ia Le", "Ia Le", "food", "not-an-address"],  # 5
            ["Gạo Ia Le", "HTX Lúa gạo Ia Le", "Ia Le", "rice_wine", ""],  # 6: unknown group
            ["Măng khô", "Cơ sở Măng khô", "Ia Le", "food", ""],  # 7
        ],
    )
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), user="hung", now=T_LATER)
    assert dump_database(ws.url) == before

    lines = rejected_lines(result, "bad.csv")
    assert [line.split(":")[1] for line in lines] == ["3", "5", "6"], result.stderr
    assert "product" in lines[0]
    assert "producer_email" in lines[1]
    assert "rice_wine" in lines[2]
    assert "nothing was imported" in result.stderr


def test_an_unknown_state_and_a_duplicate_id_are_named_and_nothing_is_imported(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    sheet = write_csv(
        ws.root / "states.csv",
        ["id", "product", "producer", "commune", "state"],
        [
            ["IL-001", "Cà phê bột", PRODUCER, "Ia Le", "production"],  # 2
            ["IL-002", "Cà phê hạt", PRODUCER, "Ia Le", "tasting"],  # 3: no such state
            ["IL-001", "Cà phê rang xay", PRODUCER, "Ia Le", ""],  # 4: id of line 2
        ],
    )
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), user="records", now=T_IMPORT)
    assert dump_database(ws.url) == before
    lines = rejected_lines(result, "states.csv")
    assert [line.split(":")[1] for line in lines] == ["3", "4"], result.stderr
    assert "tasting" in lines[0]
    assert "IL-001" in lines[1] and "line 2" in lines[1]


def test_dry_run_checks_every_row_and_writes_nothing(workspace: Workspace) -> None:
    ws = workspace
    sheet = write_csv(
        ws.root / "ok.csv",
        ["product", "producer", "commune", "group"],
        [["Cà phê bột", PRODUCER, "Ia Le", "food"], ["Mật ong", "THT ong", "Ia Le", "food"]],
    )
    before = dump_database(ws.url)
    report = ok(ws, "import", str(sheet), "--dry-run")
    assert dump_database(ws.url) == before
    assert (report["rows"], report["imported"], report["dry_run"]) == (2, 0, True)
    assert report["problems"] == []
    assert ok(ws, "dossier", "list") == []


def test_dry_run_catches_an_id_already_in_the_database_with_exit_5(workspace: Workspace) -> None:
    ws = workspace
    ok(
        ws,
        "dossier",
        "register",
        "--id",
        "IL-2026-007",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        "--group",
        "food",
    )
    sheet = write_csv(
        ws.root / "again.csv",
        ["id", "product", "producer", "commune"],
        [
            ["IL-2026-008", "Mật ong", "THT ong", "Ia Le"],
            ["IL-2026-007", "Cà phê bột Ia Le", PRODUCER, "Ia Le"],
        ],
    )
    before = dump_database(ws.url)
    result = ws.run("import", str(sheet), "--dry-run", user="hung", now=T_LATER)
    assert dump_database(ws.url) == before
    lines = rejected_lines(result, "again.csv", code=5)  # a taken id: as `register --id` says
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("again.csv:3:") and "IL-2026-007" in lines[0]


# --- placing a dossier under way ----------------------------------------------------------------


def test_import_with_a_state_places_the_dossier_there_and_plans_its_timers(
    workspace: Workspace,
) -> None:
    ws = workspace
    sheet = write_csv(
        ws.root / "dang-danh-gia.csv",
        [
            "id",
            "product",
            "producer",
            "commune",
            "group",
            "state",
            "state_entered_at",
            "producer_email",
        ],
        [
            [
                "IL-EV-01",
                "Cà phê bột Ia Le",
                PRODUCER,
                "Ia Le",
                "food",
                "evaluation_province",
                "2026-06-01",
                "htx.iale@example.vn",
            ]
        ],
    )
    report = ok(ws, "import", str(sheet), user="records", now="2026-06-03T09:00:00+07:00")
    assert report["ids"] == ["IL-EV-01"]

    shown = ok(ws, "dossier", "show", "IL-EV-01", now="2026-06-03T09:00:00+07:00")
    assert (shown["state"], shown["stage"]) == ("evaluation_province", "evaluation")
    assert shown["state_entered_at"] == "2026-06-01T00:00:00+07:00"
    # 30 working days after Monday 1 June 2026 (no holiday in between): the last is 13 July,
    # overdue from 00:00 on 14 July
    assert shown["deadline_at"] == "2026-07-14T00:00:00+07:00"
    timers = shown["timers"]
    kinds = sorted(t["kind"] for t in timers)
    assert kinds == ["deadline", "escalation", "reminder", "reminder"], timers
    assert {t["state"] for t in timers} == {"evaluation_province"}
    deadline = next(t for t in timers if t["kind"] == "deadline")
    assert deadline["due_at"] == "2026-07-14T00:00:00+07:00"
    for t in timers:
        if t["kind"] == "reminder":
            assert "2026-06-01" < t["due_at"] < deadline["due_at"], t
        if t["kind"] == "escalation":
            assert t["due_at"] > deadline["due_at"], t

    history = ok(ws, "dossier", "history", "IL-EV-01")
    assert len(history) == 1
    assert (history[0]["trigger"], history[0]["from"], history[0]["to"]) == (
        "import",
        None,
        "evaluation_province",
    )
    assert history[0]["reason"] == "imported from dang-danh-gia.csv line 2"


# --- exports ------------------------------------------------------------------------------------


def test_csv_export_starts_with_a_utf8_bom_and_keeps_vietnamese_on_stdout_and_in_a_file(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    ok(
        ws,
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        PRODUCER,
        "--commune",
        "Ia Le",
        "--group",
        "food",
        "--set",
        "note=Đã khảo sát vùng nguyên liệu",
    )
    out = ws.root / "ho-so.csv"
    ws.run(
        "dossier", "list", "--format", "csv", "-o", str(out), user="hung", now=T_IMPORT, check=True
    )
    # `ocop dossier list --format csv > dossiers.csv`, as the manual shows it
    piped = ws.run("dossier", "list", "--format", "csv", user="hung", now=T_IMPORT, check=True)

    for where, raw in (("-o file", out.read_bytes()), ("stdout", piped.stdout.encode("utf-8"))):
        assert raw.startswith(b"\xef\xbb\xbf"), f"{where}: no UTF-8 BOM: {raw[:20]!r}"
        text = raw.decode("utf-8-sig")
        rows = list(csv.DictReader(text.splitlines()))
        assert len(rows) == 1, where
        assert rows[0]["product"] == "Cà phê bột Ia Le"
        assert rows[0]["producer"] == PRODUCER
        assert rows[0]["state_label"] == "Đăng ký ý tưởng sản phẩm"
        assert json.loads(rows[0]["data"])["note"] == "Đã khảo sát vùng nguyên liệu"


def test_an_xlsx_export_imports_into_a_fresh_database_unchanged(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    # one dossier certified in 2025 and now in trade promotion, one idea just registered
    sheet = write_csv(
        ws.root / "chung-nhan-2025.csv",
        [
            "id",
            "product",
            "producer",
            "commune",
            "group",
            "workflow",
            "state",
            "state_entered_at",
            "certified_on",
            "valid_until",
            "stars",
            "certificate_stars",
            "score",
            "certificate_no",
            "decision_no",
            "producer_email",
        ],
        [
            [
                "OCOP-2025-0015",
                "Cà phê bột Ia Le",
                PRODUCER,
                "Ia Le",
                "food",
                "ocop-1489",
                "promotion",
                "2025-11-20",
                "2025-11-20",
                "2028-11-19",
                "4",
                "4",
                "72.4",
                "OCOP-GL-2025-015",
                "812/QĐ-UBND",
                "htx.iale@example.vn",
            ]
        ],
    )
    ok(ws, "import", str(sheet), user="records", now="2026-01-05T09:00:00+07:00")
    scan = ws.root / "phieu-kiem-nghiem.pdf"
    scan.write_text("Phiếu kết quả kiểm nghiệm — cà phê bột", encoding="utf-8")
    ok(
        ws,
        "dossier",
        "attach",
        "OCOP-2025-0015",
        "lab_test",
        str(scan),
        user="htx_iale",
        now="2026-01-06T09:00:00+07:00",
    )
    ok(
        ws,
        "dossier",
        "register",
        "--product",
        "Mật ong hoa cà phê",
        "--producer",
        "Tổ hợp tác ong Ia Lê",
        "--commune",
        "Ia Le",
        "--group",
        "food",
        "--set",
        "producer_email=ong@example.vn",
        "--set",
        "note=Ý tưởng mới, đợt 1/2026",
        user="lan",
        now="2026-03-02T09:00:00+07:00",
    )

    exported = tmp_path / "ho-so.xlsx"
    ws.run(
        "dossier",
        "list",
        "--format",
        "xlsx",
        "-o",
        str(exported),
        user="hung",
        now=T_LATER,
        check=True,
    )
    assert exported.stat().st_size > 0

    fresh_root = tmp_path / "fresh"
    fresh_root.mkdir()
    write_config(fresh_root)
    fresh = Workspace(fresh_root, f"sqlite:///{fresh_root / 'ocop.db'}")
    fresh.run("init", check=True)
    report = ok(fresh, "import", str(exported), user="records", now=T_LATER)
    assert sorted(report["ids"]) == ["OCOP-2025-0015", "OCOP-2026-0001"]

    def listed(w: Workspace) -> dict[str, dict[str, Any]]:
        return {d["id"]: d for d in ok(w, "dossier", "list", now=T_LATER)}

    source, copy = listed(ws), listed(fresh)
    assert sorted(copy) == sorted(source)
    for dossier_id, original in source.items():
        imported = copy[dossier_id]
        for key in (
            "id",
            "product",
            "producer",
            "commune",
            "group",
            "workflow",
            "workflow_version",
            "state",
            "stage",
            "state_entered_at",
            "deadline_at",
        ):
            assert imported[key] == original[key], (dossier_id, key)
        fields = {k: v for k, v in original["data"].items() if k in FIELDS}
        assert {k: v for k, v in imported["data"].items() if k in FIELDS} == fields, dossier_id
    certified = copy["OCOP-2025-0015"]["data"]
    assert (certified["certificate_no"], certified["stars"], certified["valid_until"]) == (
        "OCOP-GL-2025-015",
        4,
        "2028-11-19",
    )
    assert copy["OCOP-2026-0001"]["data"]["note"] == "Ý tưởng mới, đợt 1/2026"

    verified = ok(fresh, "audit", "verify")
    assert verified["ok"] is True, verified
