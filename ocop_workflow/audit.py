"""The audit trail: append-only, hash-chained per dossier, verifiable, exportable.

Each entry's hash covers the previous entry's hash and a canonical JSON of the entry, so changing,
removing or reordering any entry breaks every later link. Database triggers (see the first
migration) reject UPDATE and DELETE; the chain is what still catches an edit made by someone who
dropped them. Verification streams the table ordered by (dossier, seq), so its memory does not
grow with the number of dossiers; an export reads it in that order a batch at a time, so its
memory does not grow with the trail.

**What an entry stores.** Every entry records the dossier as the change left it (``data_after``,
the snapshot of ``engine.snapshot``). Entries written by earlier versions also stored
the dossier as it was before (``data_before``); that copy is no longer written (the column is
NULL): it was, byte for byte, the previous entry's ``data_after``, already pinned by the chain
through ``prev_hash``, and it doubled each row to 4–6 KB, which spilled every row onto SQLite
overflow pages (bench/transitions.py counted ~1.8 WAL pages per advance for it). The hash body
is unchanged and still covers the ``data_before`` column as stored — ``null`` for new entries —
so old entries keep their hashes, an entry of either kind verifies by the same rule, and writing
a value into a new entry's ``data_before`` (or blanking an old one's) is a hash mismatch like any
other edit. Readers that show what changed (``dossier history``, exports) take the before-state
from the previous entry (:func:`history_entries`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .store import Store, audit_t, dossier_t, dumps

if TYPE_CHECKING:
    from .shapes import HistoryEntry

GENESIS = "0" * 64


def iso_utc(instant: datetime) -> str:
    """The one text form of an instant inside hashes: UTC, microseconds, explicit offset.

    Remembered for UTC instants (the engine's; a zone with summer time has equal datetimes
    that are different instants): an entry and its snapshot write the same ``at`` twice, and
    dossiers entering a state that day share their deadline; ``isoformat`` is a measurable
    part of an advance.
    """
    if instant.tzinfo is UTC:
        return _utc_text(instant)
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


@functools.lru_cache(maxsize=4096)
def _utc_text(instant: datetime) -> str:
    return instant.isoformat(timespec="microseconds")


def canonical(entry: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: equal entries give equal bytes on every machine."""
    return json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(
    *,
    dossier_id: str,
    seq: int,
    trigger: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str | None,
    at: datetime,
    data_before: Any,
    data_after: Any,
    prev_hash: str,
) -> str:
    body = {
        "dossier": dossier_id,
        "seq": seq,
        "trigger": trigger,
        "from": from_state,
        "to": to_state,
        "actor": actor,
        "reason": reason,
        "at": iso_utc(at),
        "data_before": data_before,
        "data_after": data_after,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical(body)).hexdigest()


def last_link(conn: Connection, dossier_id: str) -> tuple[int, str]:
    """(seq, hash) of the newest entry of a dossier, or (0, GENESIS)."""
    row = conn.execute(
        sa.select(audit_t.c.seq, audit_t.c.hash)
        .where(audit_t.c.dossier_id == dossier_id)
        .order_by(audit_t.c.seq.desc())
        .limit(1)
    ).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


#: How ``dumps`` writes a string (``ensure_ascii=False``): the encoder's own function. It is not
#: in the ``json`` documentation: tests/test_audit_hash.py (bodies of random text hashed both
#: ways) is what pins it, keep that test.
_string: Callable[[str], str] = json.encoder.encode_basestring


def _json(value: Any) -> str:
    """``dumps(value)`` of one value of a canonical body: strings, integers and ``None`` without
    setting an encoder up (``dumps`` writes them with these same functions)."""
    if value is None:
        return "null"
    if type(value) is str:
        return _string(value)
    if type(value) is int:
        return int.__repr__(value)
    return dumps(value)


def canonical_text(value: Mapping[str, Any], known: Mapping[str, str]) -> str:
    """``dumps(value)`` of a mapping when the canonical text of some of its values is known.

    ``known`` maps keys of ``value`` to ``dumps(value[key])`` the caller already made (the
    dossier's data it stored, a deadline's note): they are written as given, the others
    serialised here, in the order ``dumps`` sorts them (keys that are all strings).
    """
    parts = []
    try:
        for key in sorted(value):
            text = known.get(key)
            parts.append(f"{_string(key)}:{_json(value[key]) if text is None else text}")
    except TypeError:  # keys that are not all strings: as dumps writes (or refuses) them
        return dumps(value)
    return "{" + ",".join(parts) + "}"


def entry_row(
    *,
    dossier_id: str,
    seq: int,
    prev_hash: str,
    trigger: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str | None,
    at: datetime,
    data_after: Mapping[str, Any],
    data_before: Any = None,
    after_texts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The stored row of one entry, its hash computed (no database needed).

    The product writes no ``data_before`` (see the module docstring); the argument remains so
    that tests and benchmarks can build entries in the format of earlier versions.
    Each snapshot is serialised once and its text written into the canonical body as it is
    stored: the body is built as text, byte-identical to :func:`canonical` of the body
    :func:`entry_hash` makes of the objects (tests/test_audit_hash.py). ``after_texts`` holds
    ``dumps`` of some values of ``data_after`` the caller already made (the ``data`` it stored
    in the dossier row, the deadline's ``deadline_note``): they are not serialised again.
    """
    before_json = None if data_before is None else dumps(data_before)
    after_json = canonical_text(data_after, after_texts or {})
    # canonical(body) of entry_hash's body, its keys in sorted order, written out directly
    text = (
        f'{{"actor":{_json(actor)},"at":{_json(iso_utc(at))},"data_after":{after_json},'
        f'"data_before":{"null" if before_json is None else before_json},'
        f'"dossier":{_json(dossier_id)},"from":{_json(from_state)},'
        f'"prev_hash":{_json(prev_hash)},"reason":{_json(reason)},"seq":{_json(seq)},'
        f'"to":{_json(to_state)},"trigger":{_json(trigger)}}}'
    )
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {
        "dossier_id": dossier_id,
        "seq": seq,
        "trigger": trigger,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "reason": reason,
        "at": at,
        "data_before": before_json,
        "data_after": after_json,
        "prev_hash": prev_hash,
        "hash": digest,
    }


_INSERT = audit_t.insert()


def append(
    conn: Connection,
    *,
    dossier_id: str,
    head: tuple[int | None, str | None] | None = None,
    **entry: Any,
) -> tuple[int, str]:
    """Append one entry to a dossier's chain inside the caller's transaction; (seq, hash).

    ``head`` is the chain's (seq, hash) when the caller already read it with the dossier lock
    (``Store.lock_dossier``); otherwise it is read here. ``entry`` holds the keyword arguments of
    :func:`entry_row` other than seq and prev_hash.
    """
    if head is None or head[0] is None:
        prev_seq, prev_hash = last_link(conn, dossier_id)
    else:
        prev_seq, prev_hash = int(head[0]), str(head[1])
    row = entry_row(dossier_id=dossier_id, seq=prev_seq + 1, prev_hash=prev_hash, **entry)
    conn.execute(_INSERT, [row])
    return row["seq"], row["hash"]


def history_entry(row: Any, timezone: Any = UTC, before_text: str | None = None) -> HistoryEntry:
    """An entry as shown by ``dossier history`` and exported for auditors (its JSON shape is
    :class:`~ocop_workflow.shapes.HistoryEntry`'s).

    ``data_before`` is the stored column when the entry has one (written by an earlier version),
    else ``before_text``: the previous entry's ``data_after`` (:func:`history_entries`).
    ``data_before_stored`` tells which: the entry's hash covers ``data_before`` only when it is
    true (otherwise ``null``), so an auditor can re-hash an exported entry from the export alone.
    """
    from .shapes import HistoryEntry

    stored = row.data_before if row.data_before is not None else before_text
    return HistoryEntry(
        dossier=row.dossier_id,
        seq=row.seq,
        trigger=row.trigger,
        from_state=row.from_state,
        to_state=row.to_state,
        actor=row.actor,
        reason=row.reason,
        at=row.at.astimezone(timezone),
        data=json.loads(row.data_after),
        data_before=None if stored is None else json.loads(stored),
        data_before_stored=row.data_before is not None,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def history_entries(
    conn: Connection, rows: Iterable[Any], timezone: Any = UTC
) -> Iterator[HistoryEntry]:
    """``rows`` (ordered by dossier, seq) as entries, each with the dossier as it was before.

    An entry without a stored ``data_before`` (seq > 1) takes the previous entry's
    ``data_after``: the row just before it when the rows bring it (a whole history, an
    export), else read by its key (the first entry of an export ``--since``).
    """
    previous: Any = None
    for row in rows:
        yield history_entry(row, timezone, before_text(conn, row, previous))
        previous = row


def before_text(conn: Connection, row: Any, previous: Any) -> str | None:
    """The ``data_before`` to show with ``row`` when it stores none: the ``data_after`` of
    ``previous`` (the row read just before) when that is its predecessor, else read by key."""
    if row.data_before is not None or row.seq <= 1:
        return None
    if _follows(row, previous):
        return previous.data_after
    return conn.execute(
        sa.select(audit_t.c.data_after).where(
            audit_t.c.dossier_id == row.dossier_id, audit_t.c.seq == row.seq - 1
        )
    ).scalar()


def _follows(row: Any, previous: Any) -> bool:
    """Whether ``row`` is the entry right after ``previous`` in the same chain."""
    if previous is None:
        return False
    return bool(previous.dossier_id == row.dossier_id and previous.seq + 1 == row.seq)


# --- verification -----------------------------------------------------------------------------


@dataclass
class Problem:
    dossier: str
    seq: int | None
    problem: str
    #: The dossier columns that differ from what the chain says (empty for chain problems).
    columns: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    dossiers_checked: int = 0
    entries_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def document(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dossiers_checked": self.dossiers_checked,
            "entries_checked": self.entries_checked,
            "problems": [p.__dict__ for p in self.problems],
        }


def _stream(conn: Connection, query: sa.Select[Any]) -> Iterator[Any]:
    yield from conn.execution_options(stream_results=True, yield_per=2000).execute(query)


def verify(
    store: Store,
    dossier_id: str | None = None,
    documents_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    anchors: Mapping[str, Mapping[int, tuple[str, str]]] | None = None,
) -> VerifyReport:
    """Recompute every chain; name the first broken entry of each bad chain.

    ``anchors`` (from signed checkpoints: dossier → {seq: (hash, checkpoint file)}) are heads
    the chains must still contain: a chain rewritten with recomputed hashes, cut short, or a
    dossier deleted with its whole history is named although what is left is consistent.

    Also checks that each dossier's current state and data are what its last entry says, so a
    quiet UPDATE of the dossier table (bypassing the engine) is found too, and — given the
    documents folder — that every attached file is still there with the recorded hash.
    """
    report = VerifyReport()
    byte_order = "C" if store.dialect == "postgresql" else "BINARY"
    entries = sa.select(audit_t).order_by(audit_t.c.dossier_id.collate(byte_order), audit_t.c.seq)
    dossiers = sa.select(dossier_t).order_by(dossier_t.c.id.collate(byte_order))
    if dossier_id is not None:
        entries = entries.where(audit_t.c.dossier_id == dossier_id)
        dossiers = dossiers.where(dossier_t.c.id == dossier_id)
    with store.read() as conn:
        # Both streams are in the same (byte) order of dossier id, walked side by side: memory
        # stays flat whatever the number of dossiers.
        rows = iter(_stream(conn, dossiers))
        waiting = next(rows, None)

        def settle(dossier: str, tail: Any) -> None:
            nonlocal waiting
            while waiting is not None and waiting.id < dossier:
                check(waiting, None)
                waiting = next(rows, None)
            if waiting is not None and waiting.id == dossier:
                check(waiting, tail)
                waiting = next(rows, None)
            else:
                report.problems.append(
                    Problem(dossier, None, "history entries for a missing dossier")
                )

        def check(dossier: Any, tail: Any) -> None:
            report.dossiers_checked += 1
            _check_current(report, dossier, tail)
            if documents_dir is not None:
                _check_documents(report, dossier, documents_dir)

        if anchors is not None and dossier_id is not None:
            anchors = {k: v for k, v in anchors.items() if k == dossier_id}
        chain = _ChainCheck(report, anchors or {})
        shown = 0
        for row in _stream(conn, entries):
            if progress is not None and report.entries_checked - shown >= 1000:
                progress(1000)
                shown += 1000
            done = chain.feed(row)
            if done is not None:
                settle(*done)
        if progress is not None and report.entries_checked > shown:
            progress(report.entries_checked - shown)  # end the bar at 100 %
        final = chain.finish()
        if final is not None:
            settle(*final)
        while waiting is not None:
            check(waiting, None)
            waiting = next(rows, None)
    for gone in sorted(set(anchors or {}) - chain.seen):
        seq, (_, source) = max((anchors or {})[gone].items())
        report.problems.append(
            Problem(
                gone,
                None,
                f"deleted: checkpoint {source} saw its history up to entry {seq}, "
                "the database has none",
            )
        )
    return report


#: An anchor two signed checkpoints disagree on (see ``checkpoint.anchors``): no hash matches it.
ANCHORS_DISAGREE = "!disagree"


class _ChainCheck:
    """Walks entries in (dossier, seq) order, one dossier at a time."""

    def __init__(
        self, report: VerifyReport, anchors: Mapping[str, Mapping[int, tuple[str, str]]]
    ) -> None:
        self.report = report
        self.anchors = anchors
        self.anchor: Mapping[int, tuple[str, str]] = {}
        self.seen: set[str] = set()
        self.dossier: str | None = None
        self.expected_seq = 1
        self.prev_hash = GENESIS
        self.broken = False
        self.last: Any = None
        self.first_at: datetime | None = None

    def feed(self, row: Any) -> tuple[str, Any] | None:
        done = None
        if row.dossier_id != self.dossier:
            done = self.finish()
            self.dossier, self.expected_seq, self.prev_hash = row.dossier_id, 1, GENESIS
            self.broken = False
            self.first_at = row.at
            self.anchor = self.anchors.get(row.dossier_id, {})
            self.seen.add(row.dossier_id)
        self.report.entries_checked += 1
        self.last = row
        if self.broken:
            return done
        problem = self._check(row)
        if problem is None and row.seq in self.anchor and self.anchor[row.seq][0] != row.hash:
            digest, source = self.anchor[row.seq]
            problem = (
                f"rewritten: checkpoints {source} disagree on entry {row.seq}"
                if digest == ANCHORS_DISAGREE
                else f"rewritten: entry {row.seq} is not the one checkpoint {source} saw"
            )
        if problem:
            self.report.problems.append(Problem(row.dossier_id, row.seq, problem))
            self.broken = True
        self.expected_seq = row.seq + 1
        self.prev_hash = row.hash
        return done

    def finish(self) -> tuple[str, Any] | None:
        if self.dossier is None:
            return None
        if not self.broken and self.anchor and max(self.anchor) > self.last.seq:
            seq, (_, source) = max(self.anchor.items())
            self.report.problems.append(
                Problem(
                    self.dossier,
                    self.last.seq,
                    f"truncated: checkpoint {source} saw entry {seq}, the history now ends "
                    f"at {self.last.seq}",
                )
            )
            self.broken = True
        return (self.dossier, None if self.broken else _Tail(self.last, self.first_at))

    def _check(self, row: Any) -> str | None:
        if row.seq != self.expected_seq:
            return f"sequence gap: expected seq {self.expected_seq}, found {row.seq}"
        if row.prev_hash != self.prev_hash:
            return "prev_hash does not match the previous entry's hash"
        try:
            before = None if row.data_before is None else json.loads(row.data_before)
            after = json.loads(row.data_after)
        except (ValueError, TypeError, RecursionError):  # whatever an intruder wrote
            return "stored data is not valid JSON"
        digest = entry_hash(
            dossier_id=row.dossier_id,
            seq=row.seq,
            trigger=row.trigger,
            from_state=row.from_state,
            to_state=row.to_state,
            actor=row.actor,
            reason=row.reason,
            at=row.at,
            data_before=before,
            data_after=after,
            prev_hash=row.prev_hash,
        )
        if digest != row.hash:
            return "hash mismatch: the entry was changed after it was written"
        return None


@dataclass(frozen=True)
class _Tail:
    """The end of a sound chain: its last entry, and when its first entry was written."""

    last: Any
    first_at: datetime | None


#: Dossier columns recorded in the ``data_after`` snapshot of every entry written since the row
#: was first covered whole (engine.snapshot): (snapshot key, column).
_SNAPSHOT_COLUMNS = (
    ("product", "product"),
    ("producer", "producer"),
    ("commune", "commune"),
    ("group", "product_group"),
    ("data", "data"),
    ("workflow", "workflow"),
    ("workflow_version", "workflow_version"),
    ("workflow_sha256", "workflow_sha256"),
    ("stage", "stage"),
    ("state_entered_at", "state_entered_at"),
    ("state_entry_seq", "state_entry_seq"),
    ("deadline_at", "deadline_at"),
    ("deadline_note", "deadline_note"),
)
#: Dossier columns deliberately not compared, and why (tests require every other one covered).
NOT_EVIDENCE = {
    "calendar_fingerprint": (
        "which calendar planned the deadline: a cache the sweep sets without an entry when the "
        "deadline is unchanged; a wrong value only makes the sweep re-plan, which is audited"
    ),
}
_JSON_COLUMNS = frozenset({"data", "deadline_note"})
_TIME_COLUMNS = frozenset({"state_entered_at", "deadline_at", "created_at", "updated_at"})


def expected_row(tail: _Tail) -> dict[str, Any]:
    """Every dossier column the chain determines: recomputed (id, state, version, times) or
    recorded in the last entry's snapshot. Old entries lack the later snapshot keys; those
    columns are then simply not in the answer (their hashes must stay as they were)."""
    last = tail.last
    snapshot = json.loads(last.data_after)
    expected: dict[str, Any] = {
        "id": last.dossier_id,
        "state": last.to_state,
        "version": last.seq,
        "updated_at": iso_utc(last.at),
    }
    if tail.first_at is not None:
        expected["created_at"] = iso_utc(tail.first_at)
    for key, column in _SNAPSHOT_COLUMNS:
        if key in snapshot:
            expected[column] = snapshot[key]
    return expected


def _as_recorded(column: str, value: Any) -> Any:
    """A dossier column in the form its snapshot records it."""
    if value is None:
        return None
    if column in _JSON_COLUMNS:
        try:
            return json.loads(value)
        except (ValueError, TypeError, RecursionError):
            return value  # not JSON: cannot equal what the chain recorded
    if column in _TIME_COLUMNS:
        return iso_utc(value)
    return value


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def _check_current(report: VerifyReport, dossier: Any, tail: _Tail | None) -> None:
    """Compare every column of the dossier row with what its chain says it must be."""
    if tail is None:
        if not any(p.dossier == dossier.id for p in report.problems):
            report.problems.append(Problem(dossier.id, None, "dossier has no history"))
        return
    row = dossier._mapping
    differing: list[str] = []
    details: list[str] = []
    for column, expected in expected_row(tail).items():
        actual = _as_recorded(column, row[column])
        if actual == expected:
            continue
        differing.append(column)
        if column in _JSON_COLUMNS:
            details.append(f"dossier {column} differs from its last history entry")
        elif column == "state":
            details.append(f"dossier is in state {actual} but its history ends in {expected}")
        else:
            details.append(
                f"column {column} is {_shown(actual)} but its history says {_shown(expected)}"
            )
    if differing:
        report.problems.append(
            Problem(dossier.id, tail.last.seq, "; ".join(details), columns=differing)
        )


def count_entries(
    store: Store, dossier_id: str | None = None, since: datetime | None = None
) -> int:
    """How many entries a verify or an export will walk (the length of its progress bar)."""
    query = sa.select(sa.func.count()).select_from(audit_t)
    if dossier_id is not None:
        query = query.where(audit_t.c.dossier_id == dossier_id)
    if since is not None:
        query = query.where(audit_t.c.at >= since)
    with store.read() as conn:
        return int(conn.execute(query).scalar_one())


def _check_documents(report: VerifyReport, dossier: Any, root: Path) -> None:
    from .documents import verify_files

    try:
        data = json.loads(dossier.data)
    except (ValueError, TypeError, RecursionError):
        return  # the data column itself is reported by _check_current
    documents = data.get("documents", []) if isinstance(data, dict) else []
    if not isinstance(documents, list) or not all(isinstance(d, dict) for d in documents):
        report.problems.append(Problem(dossier.id, None, "data.documents is not a list of records"))
        return
    for problem in verify_files(root, documents):
        report.problems.append(Problem(dossier.id, None, problem))


# --- export -----------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "dossier",
    "seq",
    "trigger",
    "from",
    "to",
    "actor",
    "reason",
    "at",
    "data",
    "data_before",
    "data_before_stored",
    "prev_hash",
    "hash",
)


#: How many entries an export reads at a time, each batch in a short read of its own: what the
#: export holds in memory at most (with one entry's JSON), however long the trail.
EXPORT_BATCH = 200


def export(
    store: Store,
    out: IO[str],
    *,
    fmt: str = "jsonl",
    since: datetime | None = None,
    timezone: Any = UTC,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the trail (oldest first per dossier) as CSV or JSON Lines; returns entries written.

    ``progress`` is told every 1,000 entries written (the CLI draws a bar with it). Written as
    it is read (:func:`export_lines`).

    An exported entry is re-hashed from the export alone: SHA-256 of the UTF-8 JSON (keys sorted,
    no spaces, non-ASCII as is) of ``dossier, seq, trigger, from, to, actor, reason``, ``at`` in
    UTC with microseconds (``2026-03-02T02:00:00.000000+00:00``), ``data_before`` if
    ``data_before_stored`` else ``null``, ``data_after`` (the export's ``data``) and
    ``prev_hash`` (README, ``ocop audit export``; tests/test_audit_format.py does it).
    """
    out.write(export_header(fmt))
    count = 0
    for count, line in enumerate(export_lines(store, fmt=fmt, since=since, timezone=timezone), 1):
        out.write(line)
        if progress is not None and count % 1000 == 0:
            progress(1000)
    if progress is not None and count % 1000:
        progress(count % 1000)  # the bar ends at 100 %, not at the last full thousand
    return count


def export_text(
    store: Store, *, fmt: str = "jsonl", since: datetime | None = None, timezone: Any = UTC
) -> Iterator[str]:
    """The whole export as :func:`export` writes it, piece by piece as it is read (the server
    sends it so: its memory does not grow with the trail)."""
    yield export_header(fmt)
    yield from export_lines(store, fmt=fmt, since=since, timezone=timezone)


def export_header(fmt: str) -> str:
    """What an export starts with: the CSV's header line; nothing for JSON Lines."""
    if fmt != "csv":
        return ""
    return _csv_line()({column: column for column in EXPORT_COLUMNS})


def export_lines(
    store: Store, *, fmt: str = "jsonl", since: datetime | None = None, timezone: Any = UTC
) -> Iterator[str]:
    """One line of text per entry (``fmt`` ``csv`` or ``jsonl``), as they are read."""
    csv_line = _csv_line() if fmt == "csv" else None
    for entry in trail(store, since=since, timezone=timezone):
        document = entry.to_json()
        if csv_line is None:
            yield json.dumps(document, ensure_ascii=False) + "\n"
        else:
            yield csv_line(_csv_cells(document))


def _csv_line() -> Callable[[Mapping[str, Any]], str]:
    """A row of the export's CSV as its text (the ``csv`` module's quoting and ``\\r\\n``):
    ``writerow`` returns what its file's ``write`` returns, and this file's returns the line."""
    writer = csv.DictWriter(_Echo(), fieldnames=EXPORT_COLUMNS)

    def line(row: Mapping[str, Any]) -> str:
        return str(writer.writerow(row))

    return line


class _Echo:
    """A "file" whose ``write`` gives back the text it is given, keeping nothing."""

    @staticmethod
    def write(text: str) -> str:
        return text


def _csv_cells(document: dict[str, Any]) -> dict[str, Any]:
    """An entry's JSON document as CSV cells: the data as JSON text, the flag as ``true`` or
    ``false``, and no cell a spreadsheet would take for a formula (``exports.neutralise``)."""
    from .exports import neutralise

    document["data"] = dumps(document["data"])
    before = document["data_before"]
    document["data_before"] = None if before is None else dumps(before)
    document["data_before_stored"] = "true" if document["data_before_stored"] else "false"
    return {k: neutralise(v) for k, v in document.items()}


def trail(
    store: Store,
    *,
    since: datetime | None = None,
    timezone: Any = UTC,
    batch: int | None = None,
) -> Iterator[HistoryEntry]:
    """Every entry (at or after ``since``), ordered by dossier and seq, as history entries.

    Read ``batch`` entries (``EXPORT_BATCH``) at a time, each batch in a short read transaction
    of its own that ends before its entries are handed on, from where the last one stopped
    (its key): the memory is one batch's, however long the trail, and no transaction stays
    open while whoever takes the entries (a slow client of the server) dawdles. Entries are
    only ever appended, so each chain exported is its chain as it stood at some instant of
    the export: one appended meanwhile is in it if its batch had not been read yet.
    """
    size = EXPORT_BATCH if batch is None else batch
    query = sa.select(audit_t).order_by(audit_t.c.dossier_id, audit_t.c.seq).limit(size)
    if since is not None:
        query = query.where(audit_t.c.at >= since)
    previous: Any = None
    while True:
        read = _batch(store, query, previous)
        full = len(read) == size
        previous = read[-1][0] if read else None
        read.reverse()
        while read:  # each row let go once handed on: one batch held, never two
            row, before = read.pop()
            yield history_entry(row, timezone, before)
        if not full:
            return


def _batch(store: Store, query: sa.Select[Any], previous: Any) -> list[tuple[Any, str | None]]:
    """The rows of ``query`` after ``previous`` (the last row read, or None: from the start),
    each with the ``data_before`` to show with it (``before_text``), in one read."""
    if previous is not None:
        key = sa.tuple_(audit_t.c.dossier_id, audit_t.c.seq)
        query = query.where(key > (previous.dossier_id, previous.seq))
    with store.read() as conn:
        rows = conn.execute(query).all()
        read = []
        for row in rows:
            read.append((row, before_text(conn, row, previous)))
            previous = row
    return read
