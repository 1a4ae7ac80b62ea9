"""``ocop import``: dossiers from a CSV or XLSX sheet, all or nothing.

Offices moving from spreadsheets bring their dossiers as rows: ``product, producer, commune`` and
optionally ``id, group, workflow``, a ``state`` (with ``state_entered_at``) for dossiers already
under way, and one column per data field of the workflow. Every row is checked before anything is
written; a single bad row means nothing is imported, and every bad row is named with its line
number and reason. The import runs in one transaction; each dossier's first audit entry is an
``import`` entry naming the file and line, so the trail says where the dossier came from.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .config import User, parse_instant
from .engine import Engine, NewDossier
from .errors import Conflict, OcopError, PermissionDenied, UsageError
from .exports import restore
from .inputs import check_file, check_text
from .store import audit_t, dossier_t, timer_t

BASE_COLUMNS = (
    "id",
    "product",
    "producer",
    "commune",
    "group",
    "workflow",
    "state",
    "state_entered_at",
    "data",
)
#: The largest sheet an import reads: 100,000 rows of a real office are a few tens of MiB.
MAX_IMPORT_BYTES = 64 << 20
#: Rows an import holds at most: all go in one transaction, which holds the database's write
#: lock (SQLite) while it runs, and each is a dossier for good (the trail is never deleted). A
#: province's migration from spreadsheets is split into sheets of this size.
MAX_IMPORT_ROWS = 10_000
#: Columns of ``dossier list --format csv|xlsx`` that an import ignores (derived or per-database),
#: so that an export can be imported elsewhere as it is.
EXPORT_ONLY = ("state_label", "stage", "deadline_at", "overdue", "version")


@dataclass
class ImportReport:
    rows: int = 0
    imported: int = 0
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "imported": self.imported,
            "dry_run": self.dry_run,
            "problems": self.problems,
            "ids": self.ids,
        }


class ImportRejected(UsageError):
    """The file has bad rows (exit 2); nothing was written. ``problems`` names each line, and
    ``report`` is the row-by-row report. Its kinds below are also the error they amount to."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report
        self.problems = report.problems

    @classmethod
    def of(
        cls, message: str, report: ImportReport, *, refused: bool, conflict: bool
    ) -> ImportRejected:
        """The rejection a report amounts to: refused if any row is one the acting user may not
        import, a conflict if the only problem is ids already taken, else bad rows."""
        kind = ImportRefused if refused else ImportConflict if conflict else cls
        return kind(message, report)


class ImportRefused(PermissionDenied, ImportRejected):
    """A row the acting user may not import (another organisation's, a records migration
    without the role): exit 6, 403, as one such registration."""


class ImportConflict(Conflict, ImportRejected):
    """Every row is fine but ids are taken (by another import meanwhile): exit 5, 409, as
    ``register --id`` says."""


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number as a person sees it, row) from a CSV (UTF-8, BOM tolerated) or XLSX file.

    A file that is not what its name says is a usage error naming the file, not a traceback:
    a CSV that is no UTF-8 text or no CSV, and any XLSX that openpyxl cannot read
    (``_xlsx_rows``).
    """
    try:
        yield from _read_rows(path)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text (save the sheet as CSV UTF-8)") from None
    except (csv.Error, OSError) as exc:
        raise UsageError(f"{path}: cannot be read as {path.suffix or 'a sheet'}: {exc}") from None


def _read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            _check_header(reader.fieldnames or [], path)
            for row in reader:
                yield (
                    reader.line_num,
                    {k.strip(): restore((v or "").strip()) for k, v in row.items() if k},
                )
    elif suffix == ".xlsx":
        rows = _xlsx_rows(path)
        header = [str(h).strip() if h is not None else "" for h in next(rows, ())]
        _check_header(header, path)
        for number, values in enumerate(rows, start=2):
            if values is None or all(v is None for v in values):
                continue
            yield number, {h: _cell(v) for h, v in zip(header, values, strict=False) if h}
    else:
        raise UsageError(f"{path}: import reads .csv or .xlsx files")


def _xlsx_rows(path: Path) -> Iterator[Any]:
    """The first sheet's rows (tuples of cell values) as openpyxl reads them.

    Whatever openpyxl (or the zip, zlib and XML parsers under it) raises on a file it cannot
    read is a usage error naming the file. Its failures on a damaged or crafted file are too
    many to list one by one (``BadZipFile``, ``zlib.error``, ``EOFError``, ``SyntaxError``
    from the XML parsers, ``IndexError`` for a shared string that is not there, ``TypeError``
    and ``NotImplementedError`` from crafted parts…); only openpyxl's work is caught here, so
    an error of this module's own is not taken for a bad file.
    """
    from openpyxl import load_workbook

    try:
        _check_unpacked_size(path)
        book = load_workbook(path, read_only=True, data_only=True)
        try:
            yield from book.worksheets[0].iter_rows(values_only=True)
        finally:
            book.close()
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path}: cannot be read as {path.suffix}: {exc}") from None


#: What an XLSX may unpack to. 10,000 rows of a dossier sheet unpack to a few megabytes.
XLSX_MAX_UNPACKED = 200 << 20


def _check_unpacked_size(path: Path) -> None:
    """Refuse a zip bomb before openpyxl opens it: the upload limit counts the packed bytes,
    but openpyxl holds the shared strings unpacked in memory, even in read-only mode."""
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > XLSX_MAX_UNPACKED:
        raise UsageError(
            f"{path}: unpacks to {unpacked:,} bytes (at most {XLSX_MAX_UNPACKED:,}): "
            "not a dossier sheet; nothing was imported"
        )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        )
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return restore(str(value).strip()) if isinstance(value, str) else str(value)


def _check_header(header: Sequence[str], path: Path) -> None:
    """The columns a dossier needs, each named once (names compared as read: stripped).

    A column named twice is refused: a person reading the sheet sees the first copy, the
    rows would be read from the last, so a crafted sheet could show one value and register
    another. Blank header cells are no columns and may repeat.
    """
    from collections import Counter

    names = [h.strip() for h in header if h and h.strip()]
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    if twice:
        raise UsageError(
            f"{path}: the header names column(s) {', '.join(twice)} twice: keep one of each"
        )
    header = names
    missing = [c for c in ("product", "producer", "commune") if c not in header]
    if missing:
        raise UsageError(f"{path}: the header lacks column(s) {', '.join(missing)}")


def import_file(
    engine: Engine,
    actor: User,
    path: Path,
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check every row, then (unless ``dry_run``) insert them all in one transaction."""
    check_file(path)
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise UsageError(
            f"{path}: {path.stat().st_size} bytes; an import sheet is at most "
            f"{MAX_IMPORT_BYTES // (1 << 20)} MiB (split it)"
        )
    report = ImportReport(dry_run=dry_run)
    checked: list[tuple[int, NewDossier, datetime | None]] = []
    seen_ids: dict[str, int] = {}
    seen_folded: dict[str, str] = {}  # ids are unique whatever their case
    refused = False
    sha256 = file_sha256(path)
    for line, row in read_rows(path):
        report.rows += 1
        if report.rows > MAX_IMPORT_ROWS:
            raise UsageError(
                f"{path.name}: more than {MAX_IMPORT_ROWS:,} rows; an import sheet holds at "
                "most that many (split it): nothing was imported"
            )
        try:
            new, entered = _check_row(engine, actor, row)
            if new.dossier_id is not None:
                twin = seen_folded.get(new.dossier_id.lower())
                if twin is not None:
                    raise UsageError(f"id {new.dossier_id} is also on line {seen_ids[twin]}")
                seen_ids[new.dossier_id] = line
                seen_folded[new.dossier_id.lower()] = new.dossier_id
            checked.append((line, new, entered))
        except OcopError as exc:
            refused = refused or isinstance(exc, PermissionDenied)
            report.problems.append(f"{path.name}:{line}: {exc.message}")
        if progress is not None:
            progress(1)
    bad = len(report.problems)
    taken = _ids_taken(engine, seen_ids, path.name)
    report.problems = sorted(report.problems + taken, key=lambda p: _line_of(p, path.name))
    if report.problems:
        what = "refused or bad" if refused else "bad"
        raise ImportRejected.of(
            f"{len(report.problems)} {what} row(s) in {path.name}; nothing was imported",
            report,
            refused=refused,
            conflict=bad == 0,
        )
    if file_sha256(path) != sha256:
        raise Conflict(f"{path} changed while it was being read; nothing was imported")
    if dry_run:
        return report
    now = engine.clock()
    try:
        _insert(engine, actor, path, sha256, checked, report, now)
    except (sa.exc.IntegrityError, Conflict):
        # Checked above, but another import or registration may take an id in between.
        raise Conflict(
            f"{path.name}: a dossier id of this file was taken meanwhile (another import or "
            "registration); nothing was imported"
        ) from None
    report.imported = len(report.ids)
    return report


def _line_of(problem: str, name: str) -> int:
    """The line number of a ``name:N: reason`` problem (read after the file's name, which may
    hold ':' and digits itself)."""
    line, _, _ = problem.removeprefix(f"{name}:").partition(":")
    return int(line) if line.isdigit() else 0


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file being imported, recorded with each imported dossier."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _insert(
    engine: Engine,
    actor: User,
    path: Path,
    sha256: str,
    checked: list[tuple[int, NewDossier, datetime | None]],
    report: ImportReport,
    now: datetime,
) -> None:
    """Write every checked row in one transaction (batched executemany per table)."""
    with engine.store.write() as conn:
        fresh = iter(engine.next_ids(conn, now, sum(1 for _, n, _ in checked if not n.dossier_id)))
        dossiers, entries, planned = [], [], []
        for line, new, entered in checked:
            row, entry, timer_rows = engine.new_rows(
                new,
                new.dossier_id or next(fresh),
                actor,
                now,
                entered_at=entered,
                trigger="import",
                reason=f"imported from {path.name} line {line}",
                source={"file": path.name, "sha256": sha256, "line": line},
            )
            dossiers.append(row)
            entries.append(entry)
            planned += timer_rows
            report.ids.append(row["id"])
        # Batched: one executemany per table, not a statement per row (10,000 rows in seconds).
        for table, rows in ((dossier_t, dossiers), (audit_t, entries), (timer_t, planned)):
            for start in range(0, len(rows), 2000):
                conn.execute(table.insert(), rows[start : start + 2000])


def _data_column(text: str) -> dict[str, str]:
    """The ``data`` column of an export: a JSON object; its workflow fields are imported."""
    from .inputs import json_document

    if not text:
        return {}
    value = json_document(text.encode("utf-8"), "the data column")
    if not isinstance(value, dict):
        raise UsageError("the data column is not a JSON object")
    return {k: str(v) for k, v in value.items() if v is not None and not isinstance(v, dict | list)}


def _ids_taken(engine: Engine, ids: dict[str, int], name: str) -> list[str]:
    """Rows whose id is already a dossier in the database, whatever its case."""
    from .engine import taken, taken_ids

    with engine.store.read() as conn:
        found = taken_ids(conn, ids)
    return [f"{name}:{ids[given]}: {taken(given)}" for given in sorted(found, key=ids.__getitem__)]


def _check_row(
    engine: Engine, actor: User, row: dict[str, str]
) -> tuple[NewDossier, datetime | None]:
    wf = engine.registry.get(row.get("workflow") or engine.config.default_workflow)
    known = (*BASE_COLUMNS, *EXPORT_ONLY)
    unknown = [c for c in row if c not in known and c not in wf.fields and row[c]]
    if unknown:
        raise UsageError(f"unknown column(s) for {wf.name}: {', '.join(unknown)}")
    state = row.get("state") or None
    values: dict[str, Any] = {}
    texts = _data_column(row.get("data", ""))
    for name, spec in wf.fields.items():
        text = row.get(name, "") or texts.get(name, "")
        if not text:
            continue
        if spec.protected and state is None:
            raise UsageError(f"{name} is set by the engine; give it only with a state")
        values[name] = spec.parse(text)
    entered = None
    if row.get("state_entered_at"):
        if state is None:
            raise UsageError("state_entered_at needs a state")
        entered = _entered_at(row["state_entered_at"], engine.clock())
    if state is not None:
        check_text(state, "state")
        if state not in wf.states:
            raise UsageError(f"unknown state '{state}' in {wf.name}")
    new = engine.check_new(
        actor,
        product=row.get("product", ""),
        producer=row.get("producer", ""),
        commune=row.get("commune", ""),
        group=row.get("group") or None,
        workflow=wf.name,
        dossier_id=row.get("id") or None,
        values=values,
        state=state,
        entered_at=entered,
    )
    return new, entered


def _entered_at(text: str, now: datetime) -> datetime:
    """When a migrated dossier entered its state: a real instant, not after now.

    A state entered in the future (``9999-12-31``) would push every deadline past any date the
    calendar can count; one before 1900 is no record of this programme either.
    """
    check_text(text, "state_entered_at")
    entered = parse_instant(
        text if "T" in text else f"{text}T00:00:00+07:00", "state_entered_at", UsageError
    )
    if entered > now:
        raise UsageError(f"state_entered_at {text} is in the future")
    if entered.year < 1900:
        raise UsageError(f"state_entered_at {text} is before 1900")
    return entered
