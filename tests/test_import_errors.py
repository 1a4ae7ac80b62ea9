"""A sheet that is not what its name says is a clear usage error, never a traceback."""

from __future__ import annotations

from conftest import Workspace, dump_database


def test_an_xlsx_that_is_not_a_workbook_and_a_csv_that_is_not_utf8_exit_2_naming_the_file(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    broken = ws.root / "danh-sach.xlsx"
    broken.write_text("not a zip", encoding="utf-8")
    latin = ws.root / "danh-sach.csv"
    latin.write_bytes(b"product,producer,commune\n\xff\xfe,HTX,Ia Le\n")
    before = dump_database(ws.url)
    for path, said in ((broken, "cannot be read as .xlsx"), (latin, "not UTF-8")):
        result = ws.run("import", str(path), user="hung")
        assert result.code == 2, result
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and path.name in result.stderr
        assert said in result.stderr
    assert dump_database(ws.url) == before
