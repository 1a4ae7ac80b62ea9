"""Documents: stored in one pass under the hash of exactly what was stored, readable by the
service group, and refused over ``[documents] max_bytes`` with nothing stored."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import Workspace, dump_database, write_config

from ocop_workflow.documents import CHUNK, store_file

NOW = "2026-03-02T09:00:00+07:00"


class ChangingFile(type(Path())):  # type: ignore[misc]
    """A real file that someone rewrites on disk right after its first chunk has been read
    (an officer saving a scan again while it is being attached)."""

    def open(self, *args: Any, **kwargs: Any) -> IO[Any]:  # type: ignore[override]
        handle = super().open(*args, **kwargs)
        path = Path(self)
        read = handle.read
        state = {"reads": 0}

        def reading(size: int = -1) -> bytes:
            chunk = read(size)
            state["reads"] += 1
            if state["reads"] == 1:
                path.write_bytes(b"B" * (3 * CHUNK))  # same size, other content
            return chunk

        handle.read = reading  # type: ignore[method-assign]
        return handle


def test_a_file_rewritten_during_attach_is_stored_under_the_hash_of_the_stored_bytes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"A" * (3 * CHUNK))
    store = tmp_path / "documents"
    sha256, size, new = store_file(store, ChangingFile(source))
    blob = store / sha256[:2] / sha256
    assert new and size == 3 * CHUNK
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha256
    assert [p.name for p in store.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.fixture
def ws(tmp_path: Path, sqlite_url: str) -> Workspace:
    write_config(tmp_path, extra="[documents]\nmax_bytes = 4096\n")
    ws = Workspace(tmp_path, sqlite_url)
    ws.run("init", check=True)
    ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê bột",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--id",
        "OCOP-DOC-1",
        user="lan",
        now=NOW,
        check=True,
    )
    return ws


def ocop_with_umask(ws: Workspace, *args: str, umask: int = 0o077) -> subprocess.CompletedProcess:
    """A real ``ocop`` process started with the service's restrictive umask."""
    return subprocess.run(
        [sys.executable, "-m", "ocop_workflow", *args],
        capture_output=True,
        text=True,
        env=ws.env(OCOP_USER="htx_iale", OCOP_NOW=NOW),
        cwd=ws.root,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
        check=False,
    )


def test_blobs_are_readable_by_the_service_group_whatever_the_umask(ws: Workspace) -> None:
    scan = ws.root / "dang-ky.pdf"
    scan.write_bytes("Phiếu đăng ký sản phẩm OCOP".encode() * 50)
    (ws.root / "documents").mkdir(mode=0o700)  # made first by a process with umask 077
    done = ocop_with_umask(ws, "dossier", "attach", "OCOP-DOC-1", "registration_form", str(scan))
    assert done.returncode == 0, done.stderr
    sha = hashlib.sha256(scan.read_bytes()).hexdigest()
    blob = ws.root / "documents" / sha[:2] / sha
    assert stat.S_IMODE(blob.stat().st_mode) == 0o640
    assert stat.S_IMODE(blob.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE((ws.root / "documents").stat().st_mode) == 0o750
    assert ws.run("audit", "verify").code == 0


def test_a_file_over_max_bytes_is_refused_with_nothing_stored(ws: Workspace) -> None:
    big = ws.root / "video.mp4"
    big.write_bytes(b"\0" * 4097)
    before = dump_database(ws.url)
    result = ws.run(
        "dossier", "attach", "OCOP-DOC-1", "registration_form", str(big), user="htx_iale", now=NOW
    )
    assert result.code == 2, result
    assert result.stderr.startswith("error: ") and "max_bytes" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1
    assert dump_database(ws.url) == before
    stored = ws.root / "documents"
    assert not stored.exists() or [p for p in stored.rglob("*") if p.is_file()] == []
    exactly = ws.root / "ok.pdf"
    exactly.write_bytes(b"x" * 4096)
    assert (
        ws.run(
            "dossier",
            "attach",
            "OCOP-DOC-1",
            "registration_form",
            str(exactly),
            user="htx_iale",
            now=NOW,
        ).code
        == 0
    )


def test_a_fifo_or_device_to_attach_or_import_is_a_usage_error_not_a_missing_file(
    ws: Workspace,
) -> None:
    """Something that exists but is not a regular file is exit 2 saying so (it was "file …
    not found", exit 3); a path with nothing there stays "not found"; nothing is written."""
    fifo = ws.root / "scan.pdf"
    os.mkfifo(fifo)
    before = dump_database(ws.url)
    for path in (str(fifo), "/dev/null"):
        attached = ws.run(
            "dossier", "attach", "OCOP-DOC-1", "registration_form", path, user="htx_iale", now=NOW
        )
        assert attached.code == 2 and "not a regular file" in attached.stderr, attached
        imported = ws.run("import", path, user="lan", now=NOW)
        assert imported.code == 2 and "not a regular file" in imported.stderr, imported
    missing = ws.run("import", str(ws.root / "nothing.csv"), user="lan", now=NOW)
    assert missing.code == 3 and "not found" in missing.stderr, missing
    assert dump_database(ws.url) == before


def test_max_bytes_must_be_a_positive_integer(tmp_path: Path) -> None:
    from ocop_workflow.config import load_config
    from ocop_workflow.errors import ConfigError

    for bad in ("0", "-1", '"50MB"', "1.5"):
        write_config(tmp_path, extra=f"[documents]\nmax_bytes = {bad}\n")
        with pytest.raises(ConfigError, match=r"documents\.max_bytes"):
            load_config(tmp_path / "config.toml", {})
    write_config(tmp_path)
    assert load_config(tmp_path / "config.toml", {}).max_document_bytes == 50 * 1024 * 1024


def test_verify_names_a_blob_changed_or_removed_on_disk(ws: Workspace) -> None:
    scan = ws.root / "ke-hoach.pdf"
    scan.write_bytes("Phương án sản xuất kinh doanh".encode() * 40)
    ws.run(
        "dossier",
        "attach",
        "OCOP-DOC-1",
        "business_plan",
        str(scan),
        user="htx_iale",
        now=NOW,
        check=True,
    )
    sha = hashlib.sha256(scan.read_bytes()).hexdigest()
    blob = ws.root / "documents" / sha[:2] / sha
    blob.write_bytes(b"another file")
    altered = ws.run("audit", "verify")
    assert altered.code == 7 and "ke-hoach.pdf (business_plan) was altered on disk" in (
        altered.stdout
    ), altered
    blob.unlink()
    missing = ws.run("audit", "verify")
    assert missing.code == 7 and "ke-hoach.pdf (business_plan) is missing" in missing.stdout


def test_a_recorded_hash_that_is_not_a_sha256_never_becomes_a_path(ws: Workspace) -> None:
    import json

    import sqlalchemy as sa

    from ocop_workflow.store import dossier_t

    secret = ws.root / "outside.txt"
    secret.write_text("not a document", encoding="utf-8")
    engine = sa.create_engine(ws.url)
    with engine.begin() as conn:
        forged = {
            "documents": [{"kind": "business_plan", "name": "x.pdf", "sha256": "../../outside.txt"}]
        }
        conn.execute(dossier_t.update().values(data=json.dumps(forged)))
    engine.dispose()
    result = ws.run("audit", "verify")
    assert result.code == 7, result
    assert "x.pdf (business_plan) records no valid SHA-256" in result.stdout, result


def test_an_attachment_tells_its_instant_in_the_business_time_zone(ws: Workspace) -> None:
    """The document's record in the dossier's data keeps its instant in UTC (as stored and
    hashed); ``attach --json`` (and ``POST …/documents``) tells it in ``[engine] timezone``,
    like every other time in the JSON."""
    scan = ws.root / "dang-ky.pdf"
    scan.write_bytes("Phiếu đăng ký".encode() * 10)
    done = ws.run(
        "dossier", "attach", "OCOP-DOC-1", "registration_form", str(scan), "--json",
        user="lan", now=NOW,
    )  # fmt: skip
    assert done.code == 0, done
    assert done.json()["at"] == NOW
    stored = ws.run("dossier", "show", "OCOP-DOC-1", "--json", user="lan", now=NOW).json()
    assert stored["data"]["documents"][0]["at"] == "2026-03-02T02:00:00+00:00"


def test_a_dossier_holds_at_most_max_per_dossier_documents_and_no_more_is_stored(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Every audit entry records the dossier's data whole, its documents list included, and the
    trail cannot be deleted: a dossier's documents are bounded (``[documents]
    max_per_dossier``). One more is a usage error (exit 2) that writes nothing and stores no
    file; the ones held stay as they were."""
    write_config(tmp_path, extra="[documents]\nmax_per_dossier = 2\n")
    ws = Workspace(tmp_path, sqlite_url)
    ws.run("init", check=True)
    dossier = ws.run(
        "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", user="lan", now=NOW, check=True,
    ).json()["id"]  # fmt: skip
    for i in range(3):
        (tmp_path / f"ban-{i}.pdf").write_bytes(f"bản scan {i}".encode())
    for i in range(2):
        ws.run("dossier", "attach", dossier, "registration_form", str(tmp_path / f"ban-{i}.pdf"),
               user="lan", now=NOW, check=True)  # fmt: skip
    before = dump_database(ws.url)
    stored = sorted((tmp_path / "documents").rglob("*"))
    refused = ws.run("dossier", "attach", dossier, "registration_form",
                     str(tmp_path / "ban-2.pdf"), user="lan", now=NOW)  # fmt: skip
    assert refused.code == 2, refused
    assert "already holds 2 documents" in refused.stderr and "max_per_dossier" in refused.stderr
    assert dump_database(ws.url) == before
    assert sorted((tmp_path / "documents").rglob("*")) == stored
    # the same file again is still "already attached", full or not (a retried upload)
    again = ws.run("dossier", "attach", dossier, "registration_form",
                   str(tmp_path / "ban-0.pdf"), "--json", user="lan", now=NOW)  # fmt: skip
    assert again.code == 0, again
    assert again.json()["already_attached"] is True
    assert dump_database(ws.url) == before
    assert ws.run("audit", "verify").code == 0


def test_max_per_dossier_must_be_a_positive_integer(tmp_path: Path) -> None:
    from ocop_workflow.config import load_config
    from ocop_workflow.errors import ConfigError

    for bad in ("0", "-1", '"100"', "1.5"):
        write_config(tmp_path, extra=f"[documents]\nmax_per_dossier = {bad}\n")
        with pytest.raises(ConfigError, match="max_per_dossier"):
            load_config(tmp_path / "config.toml", {})
