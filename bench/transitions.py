"""How fast dossiers move, how much memory a worker needs, how fast the CLI starts.

Run it from the project folder::

    .venv/bin/python bench/transitions.py            # N = 10,000 dossiers, the real figures
    .venv/bin/python bench/transitions.py --quick    # N = 500, a smoke check (under a minute)

Figures are printed as they come; the last line is one JSON object with every figure. (This file
shares its name with the ``transitions`` library: ``main`` first drops bench/ from the import path.)

**Throughput.** N dossiers are registered with ``Engine.register`` and walked through the whole
ocop-1489 cycle: ``Engine.advance`` accept_idea, approve_plan, submit_dossier, forward, certify
(4★, with certificate and decision numbers), start_review, close — each by a user with the right
role, with permissions, guards, the audit hash chain, timers and the optimistic version check
(every call passes ``expect_version``) all on. The guards of the current workflow file need more
than advances between the steps, so the walk also does what an office would: ``documents.attach``
of the 5 mandatory documents and the 3 of the 4★ criteria before submit_dossier, and the
province council's ``council.record_score`` (3 members, ~75 points) and ``close_scoring`` before
certify. The walk is step by step over all dossiers (every dossier accepted, then every plan
approved, ...), so the table holds N dossiers throughout. The database is an SQLite file in a
temporary folder brought up with ``ocop_workflow.migrate.upgrade``; the clock is injected and
ticks one second per call; events go through the product's structlog pipeline (JSON lines) into
/dev/null. ``transitions_per_s`` counts the ``advance`` calls only (7 per dossier, each its own
committed transaction; time = the sum of those calls). Registrations (``registrations_per_s``)
and the attach/score writes (``amends_per_s``) are reported separately, and ``writes_per_s`` is
every write over the time of all engine calls.

**Why a floor.** Transitions per second depend as much on the machine (CPU, disk, SQLite build,
other load) as on the engine, so the same run also does the irreducible writes with the
standard-library ``sqlite3`` and nothing else: per transition one UPDATE of the dossier row and
one INSERT of an audit row (the product's schema, data of the same size, a canonical JSON body
and its sha256), one ``BEGIN IMMEDIATE`` … ``COMMIT`` each, WAL, ``synchronous=NORMAL`` — the
settings ``store.py`` uses. The floor and the engine take turns, 250 dossiers at a time, so both
see the same machine load. ``ratio`` = ``transitions_per_s / floor_transitions_per_s`` is the share
of the machine's raw speed the engine keeps, comparable across machines. The floor skips what
only the engine does: reading the row and the last audit link, permissions, guards, timer rows
(cancel + plan), logging.

**Memory.** A fresh subprocess opens a database holding 10,000 (then 100,000) dossiers and
walks 1,000 of them (50 with --quick), spread over the table, through the same cycle; it
reports its peak RSS (VmHWM) after start-up and at the end. Those databases are bulk-built: rows
made by the product's own ``snapshot``, ``audit.entry_hash`` and ``timers.plan`` (so ``audit
verify`` accepts them), inserted by SQLAlchemy Core ``executemany`` in batches of 10,000 —
``Engine.register`` one by one would take many minutes. Another fresh subprocess runs
``audit.verify`` over each database and reports its peak RSS and time. Peak RSS must not grow
with the number of dossiers in the database.

**Start-up.** ``ocop --help`` and ``ocop dossier show ID`` (against the 10k database) are timed
as subprocesses, interleaved with ``python -c "import sqlmodel"`` and a bare ``python -c pass``,
after one unmeasured warm-up each that fills a bytecode cache in the temporary folder
(``PYTHONPYCACHEPREFIX``; an inherited ``PYTHONDONTWRITEBYTECODE`` is dropped, or every run would
compile ocop_workflow again); medians of 10 runs (3 with --quick). ``show_ratio`` =
``show_s / import_sqlmodel_s``. ``--startup-only`` runs just this part (on a fresh 10k database).

Targets (the issue): transitions_per_s >= 2,500, ratio >= 0.2, rss_mb_100k not above rss_mb_10k
(a few MB of noise aside), help_s < 0.15, show_ratio and list_ratio <= 0.6 (``dossier list
--state closed`` against the 10k database, timed like show), WAL pages per advance <= 12
(``wal_pages_per_advance``: see ``WalMeter``), p99 of an advance <= 3 ms on a quiet machine.
Against Django + django-fsm-2 + django-fsm-log and the issue's floor, run the side-by-side script
(README, "Performance").
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
PRODUCER = "HTX Cà phê Ia Le"
COMMUNE = "Ia Le"
#: Monday 2 March 2026, 08:00 in Vietnam: a working day, far from Tết.
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
#: The documents a 4★ dossier needs: the mandatory set, then the 4★ criteria (scorecard).
DOCUMENT_KINDS = (
    "registration_form",
    "business_plan",
    "organisation",
    "business_registration",
    "samples",
    "quality_standard",
    "lab_test",
    "product_story",
)
#: The province council's members (hung chairs) and their scores: about 75 points, 4★.
SCORES = {
    "hung": {"a": 30.0, "b": 20.0, "c": 25.0},
    "mai": {"a": 31.0, "b": 19.0, "c": 26.0},
    "son": {"a": 29.0, "b": 21.0, "c": 24.0},
}
#: The full ocop-1489 cycle after registration, as (operation, what, user). Seven ``advance``
#: calls; the attachments and the council's scores are the writes the guards require between.
CYCLE: tuple[tuple[str, str, str], ...] = (
    ("advance", "accept_idea", "lan"),
    ("advance", "approve_plan", "lan"),
    *(("attach", kind, "htx") for kind in DOCUMENT_KINDS),
    ("advance", "submit_dossier", "htx"),
    ("advance", "forward", "lan"),
    *(("score", member, member) for member in SCORES),
    ("close_scoring", "province", "hung"),
    ("advance", "certify", "hung"),
    ("advance", "start_review", "hung"),
    ("advance", "close", "hung"),
)
ADVANCES = sum(op == "advance" for op, _, _ in CYCLE)
#: The floor's seven transitions, in order: trigger → (actor, from state, to state, to stage).
FLOOR_STEPS = {
    "accept_idea": ("lan", "registration", "business_plan", "business_plan"),
    "approve_plan": ("lan", "business_plan", "production", "production"),
    "submit_dossier": ("htx", "production", "evaluation_commune", "evaluation"),
    "forward": ("lan", "evaluation_commune", "evaluation_province", "evaluation"),
    "certify": ("hung", "evaluation_province", "promotion", "promotion"),
    "start_review": ("hung", "promotion", "review", "review"),
    "close": ("hung", "review", "closed", "review"),
}
#: Dossiers per slice when the floor and the engine take turns.
SLICE = 250
CONFIG_TOML = """\
[database]
url = "sqlite:///{db}"

[engine]
workflows_dir = "{workflows}"
default_workflow = "ocop-1489"
timezone = "Asia/Ho_Chi_Minh"
holidays = "VN"

[users.lan]
name = "Nguyễn Thị Lan"
roles = ["commune_officer"]
communes = ["Ia Le"]

[users.hung]
name = "Trần Văn Hùng"
roles = ["province_officer"]
communes = ["*"]

[users.htx]
name = "HTX Cà phê Ia Le"
roles = ["producer"]
communes = ["Ia Le"]
organisation = "HTX Cà phê Ia Le"

[users.mai]
name = "Đỗ Thị Mai"
roles = ["council_member"]
communes = ["*"]

[users.son]
name = "Võ Văn Sơn"
roles = ["council_member"]
communes = ["*"]

[councils.province]
title = "Hội đồng đánh giá, phân hạng sản phẩm OCOP cấp tỉnh"
level = "province"
chair = "hung"
members = ["hung", "mai", "son"]

[documents]
dir = "{documents}"
"""


def say(text: str) -> None:
    print(text, flush=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews every figure but ``ratio``."""
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


def ticking_clock(start: datetime = START) -> Callable[[], datetime]:
    """The injected clock: one second later on every call."""
    now = [start]

    def clock() -> datetime:
        now[0] += timedelta(seconds=1)
        return now[0]

    return clock


def write_config(folder: Path, db_name: str) -> Path:
    path = folder / f"{db_name}.toml"
    path.write_text(
        CONFIG_TOML.format(
            db=folder / f"{db_name}.db", workflows=WORKFLOWS, documents=folder / "documents"
        ),
        encoding="utf-8",
    )
    return path


def document_files(folder: Path) -> dict[str, Path]:
    """One small scanned-PDF stand-in per document kind (stored once, attached to every dossier)."""
    files = {}
    for kind in DOCUMENT_KINDS:
        path = folder / "files" / f"{kind}.pdf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"%PDF-1.4\n" + kind.encode() * 512)
        files[kind] = path
    return files


def quiet_logging() -> None:
    """The product's structlog pipeline (JSON lines), writing to /dev/null instead of stderr."""
    from ocop_workflow import log

    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as we do
    log.configure(json_lines=True, file=devnull)


def open_engine(config_path: Path, *, migrate: bool) -> Any:
    """An ``Engine`` on the config's database, as the CLI builds it but with a ticking clock."""
    from ocop_workflow.config import load_config
    from ocop_workflow.definitions import Registry
    from ocop_workflow.engine import Engine
    from ocop_workflow.store import Store

    config = load_config(config_path, {})
    store = Store(config.database_url)
    if migrate:
        from ocop_workflow.migrate import upgrade

        upgrade(store)
    store.check_schema()
    return Engine(store, Registry(config.workflows_dir), config, ticking_clock())


class WalMeter:
    """WAL pages (frames) an advance writes, counted on the first slice of every advance step.

    Before the slice the WAL is checkpointed and truncated; after it, ``PRAGMA
    wal_checkpoint(PASSIVE)`` reports how many frames the slice's commits appended (the slice
    stays well below ``wal_autocheckpoint``, so no commit checkpointed meanwhile). Before that
    checkpoint, the page number of every frame in the WAL file is read and attributed to the
    table or index that owns the page (SQLite's ``dbstat``; ``sqlite_schema`` is page 1, the
    header a commit rewrites when the file grows; ``free`` a page on the freelist): the
    breakdown ``wal_pages_by_btree`` says where the pages go.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.frames = 0
        self.advances = 0
        self.by_btree: dict[str, int] = {}

    def _pragma(self, mode: str) -> tuple[int, int, int]:
        db = sqlite3.connect(self.database, timeout=30)
        try:
            return tuple(db.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())  # type: ignore[return-value]
        finally:
            db.close()

    def start(self) -> None:
        self._pragma("TRUNCATE")

    def _attribute(self) -> None:
        """Add each WAL frame's owner (table or index name) to ``by_btree``."""
        wal = self.database.with_name(self.database.name + "-wal").read_bytes()
        if len(wal) < 32:
            return
        page_size = int.from_bytes(wal[8:12], "big")
        frame = 24 + page_size
        pages = [
            int.from_bytes(wal[at : at + 4], "big") for at in range(32, len(wal) - frame + 1, frame)
        ]
        db = sqlite3.connect(self.database, timeout=30)
        try:
            owner = dict(db.execute("SELECT pageno, name FROM dbstat"))
        finally:
            db.close()
        for page in pages:
            name = owner.get(page, "free")
            self.by_btree[name] = self.by_btree.get(name, 0) + 1

    def stop(self, advances: int) -> None:
        self._attribute()
        _busy, frames, _copied = self._pragma("PASSIVE")
        self.frames += frames
        self.advances += advances

    @property
    def pages_per_advance(self) -> float | None:
        return round(self.frames / self.advances, 2) if self.advances else None

    @property
    def breakdown(self) -> dict[str, float]:
        """WAL pages per advance by table or index, largest first."""
        if not self.advances:
            return {}
        return {
            name: round(count / self.advances, 2)
            for name, count in sorted(self.by_btree.items(), key=lambda kv: -kv[1])
        }


def walk(
    engine: Any,
    ids: list[str],
    files: dict[str, Path],
    floor: Floor | None = None,
    *,
    verbose: bool = False,
    wal: WalMeter | None = None,
) -> dict[str, list[float]]:
    """Every dossier of ``ids`` through the cycle, step by step (all dossiers do a step before
    any does the next). The floor takes turns with the engine, a slice of dossiers each, so
    both see the same machine load. Returns the seconds of each engine call, by kind."""
    from ocop_workflow import council, documents

    users = engine.config.users
    seconds: dict[str, list[float]] = {"advance": [], "amend": []}
    for step, (op, what, user_key) in enumerate(CYCLE):
        user = users[user_key]
        times = seconds["advance" if op == "advance" else "amend"]
        for lo in range(0, len(ids), SLICE):
            if op == "advance" and floor is not None:
                floor.step(what, lo, min(len(ids), lo + SLICE))
            metered = wal is not None and op == "advance" and lo == 0
            if metered:
                wal.start()  # type: ignore[union-attr]
            for dossier_id in ids[lo : lo + SLICE]:
                started = time.perf_counter()
                if op == "advance":
                    data = (
                        {"certificate_no": f"GCN-{dossier_id}", "decision_no": "123/QĐ-UBND"}
                        if what == "certify"
                        else {}
                    )
                    engine.advance(dossier_id, what, user, data=data, expect_version=step + 1)
                elif op == "attach":
                    documents.attach(engine, dossier_id, user, what, files[what])
                elif op == "score":
                    council.record_score(engine, dossier_id, user, member=what, parts=SCORES[what])
                else:
                    council.close_scoring(engine, dossier_id, user)
                times.append(time.perf_counter() - started)
            if metered:
                wal.stop(len(ids[lo : lo + SLICE]))  # type: ignore[union-attr]
        if verbose:
            took = sum(times[-len(ids) :])
            say(f"  {op} {what}: {len(ids)} in {took:.2f} s = {len(ids) / took:,.0f}/s")
    return seconds


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


# --- the product ------------------------------------------------------------------------------


def bench_engine(folder: Path, n: int) -> dict[str, Any]:
    """The engine's walk of ``n`` dossiers, taking turns with the floor's."""
    import sqlalchemy as sa

    from ocop_workflow.store import audit_t, dossier_t

    floor = Floor(folder / "floor.db", n)
    floor.register_all()
    config_path = write_config(folder, "engine")
    engine = open_engine(config_path, migrate=True)
    producer = engine.config.users["htx"]
    started = time.perf_counter()
    ids = [
        engine.register(producer, product=f"Cà phê {i}", producer=PRODUCER, commune=COMMUNE)["id"]
        for i in range(n)
    ]
    register_s = time.perf_counter() - started
    say(f"engine: {n} registrations in {register_s:.2f} s = {n / register_s:,.0f}/s")

    wal = WalMeter(folder / "engine.db")
    seconds = walk(engine, ids, document_files(folder), floor, verbose=True, wal=wal)
    advances, amends = seconds["advance"], seconds["amend"]
    advance_s, amend_s = sum(advances), sum(amends)
    result = {
        "transitions_per_s": round(len(advances) / advance_s, 1),
        "registrations_per_s": round(n / register_s, 1),
        "amends_per_s": round(len(amends) / amend_s, 1),
        "writes_per_s": round(
            (n + len(advances) + len(amends)) / (register_s + advance_s + amend_s), 1
        ),
        "advance_ms_p50": percentile_ms(advances, 0.50),
        "advance_ms_p99": percentile_ms(advances, 0.99),
        "wal_pages_per_advance": wal.pages_per_advance,
        "wal_pages_by_btree": wal.breakdown,
    }
    say(
        f"engine: {len(advances)} advances in {advance_s:.2f} s = "
        f"{result['transitions_per_s']:,.0f}/s "
        f"(p50 {result['advance_ms_p50']} ms, p99 {result['advance_ms_p99']} ms), "
        f"{result['wal_pages_per_advance']} WAL pages per advance"
    )
    say(
        "engine: WAL pages per advance by table or index: "
        + ", ".join(f"{name} {pages}" for name, pages in result["wal_pages_by_btree"].items())
    )
    say(
        f"engine: {len(amends)} amends (attach, score, close_scoring) in {amend_s:.2f} s = "
        f"{result['amends_per_s']:,.0f}/s; all writes {result['writes_per_s']:,.0f}/s"
    )
    with engine.store.read() as conn:
        closed = conn.execute(
            sa.select(sa.func.count()).where(dossier_t.c.state == "closed")
        ).scalar_one()
        entries = conn.execute(sa.select(sa.func.count()).select_from(audit_t)).scalar_one()
    if closed != n or entries != n * (len(CYCLE) + 1):
        raise SystemExit(f"engine run is wrong: {closed} closed of {n}, {entries} audit entries")
    engine.store.dispose()
    result.update(floor.finish())
    result["ratio"] = round(result["transitions_per_s"] / result["floor_transitions_per_s"], 3)
    say(f"ratio:  {result['ratio']} of the plain-sqlite3 floor")
    return result


# --- the floor: plain sqlite3 -----------------------------------------------------------------


def _sqlite_text(instant: datetime) -> str:
    """A UTC instant as SQLAlchemy stores it in SQLite (naive text)."""
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _entry(
    dossier_id: str,
    seq: int,
    trigger: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    at: datetime,
    before: dict[str, Any] | None,
    after: dict[str, Any],
    prev_hash: str,
) -> tuple[Any, ...]:
    """An audit row like the engine's: canonical JSON body, its sha256, before/after text."""
    body = {
        "dossier": dossier_id,
        "seq": seq,
        "trigger": trigger,
        "from": from_state,
        "to": to_state,
        "actor": actor,
        "reason": None,
        "at": at.isoformat(timespec="microseconds"),
        "data_before": before,
        "data_after": after,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return (
        dossier_id,
        seq,
        trigger,
        from_state,
        to_state,
        actor,
        None,
        _sqlite_text(at),
        None if before is None else _dumps(before),
        _dumps(after),
        prev_hash,
        digest,
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


INSERT_AUDIT = (
    "INSERT INTO audit_entry (dossier_id, seq, trigger, from_state, to_state, actor, reason, at, "
    "data_before, data_after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_DOSSIER = (
    "INSERT INTO dossier (id, product, producer, commune, product_group, workflow, "
    "workflow_version, state, stage, state_entered_at, state_entry_seq, deadline_at, "
    "deadline_note, version, data, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, NULL, 'ocop-1489', '1489/QĐ-TTg', 'registration', 'registration', ?, 1, "
    "NULL, NULL, 1, '{}', ?, ?)"
)
UPDATE_DOSSIER = (
    "UPDATE dossier SET state = ?, stage = ?, state_entered_at = ?, state_entry_seq = ?, "
    "data = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?"
)


class Floor:
    """The same walk with nothing but the writes, in plain sqlite3 (see the module docstring)."""

    def __init__(self, path: Path, n: int) -> None:
        from ocop_workflow.migrate import upgrade
        from ocop_workflow.store import Store

        store = Store(f"sqlite:///{path}")
        upgrade(store)  # the product's schema: same tables, indexes and append-only triggers
        store.dispose()
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.n = n
        self.clock = ticking_clock()
        self.ids: list[str] = []
        self.hashes: list[str] = []
        self.data: list[dict[str, Any]] = []
        self.register_s = 0.0
        self.advance_s = 0.0
        self.count = 0

    def register_all(self) -> None:
        # The data a dossier carries in the engine run by evaluation time (documents, scores),
        # so that the floor's JSON and hashing work is of the same size.
        payload = {
            "documents": [
                {
                    "kind": kind,
                    "name": f"{kind}.pdf",
                    "size": 5_000,
                    "sha256": "ab" * 32,
                    "at": START.isoformat(),
                    "by": "htx",
                }
                for kind in DOCUMENT_KINDS
            ],
            "scoring": {
                "province": {
                    "round": 5,
                    "council": "province",
                    "closed": True,
                    "scores": {
                        m: {**p, "total": 75.0, "note": None, "at": START.isoformat()}
                        for m, p in SCORES.items()
                    },
                    "result": {"score": 75.0, "stars": 4},
                }
            },
            "score": 75.0,
            "stars": 4,
        }
        db = self.db
        started = time.perf_counter()
        for i in range(self.n):
            dossier_id = f"OCOP-2026-{i + 1:04d}"
            at = self.clock()
            snap = {
                "product": f"Cà phê {i}",
                "producer": PRODUCER,
                "commune": COMMUNE,
                "group": None,
                "data": {},
            }
            row = _entry(
                dossier_id, 1, "register", None, "registration", "htx", at, None, snap, "0" * 64
            )
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                INSERT_DOSSIER,
                (
                    dossier_id,
                    f"Cà phê {i}",
                    PRODUCER,
                    COMMUNE,
                    _sqlite_text(at),
                    _sqlite_text(at),
                    _sqlite_text(at),
                ),
            )
            db.execute(INSERT_AUDIT, row)
            db.execute("COMMIT")
            self.ids.append(dossier_id)
            self.hashes.append(row[-1])
            self.data.append({**snap, "data": dict(payload)})
        self.register_s = time.perf_counter() - started
        say(
            f"floor:  {self.n} registrations in {self.register_s:.2f} s = "
            f"{self.n / self.register_s:,.0f}/s"
        )

    def step(self, trigger: str, lo: int, hi: int) -> None:
        """Dossiers ``lo:hi`` moved by ``trigger``: one UPDATE + one audit INSERT, one commit
        each."""
        actor, source, dest, stage = FLOOR_STEPS[trigger]
        seq = list(FLOOR_STEPS).index(trigger) + 2
        db = self.db
        started = time.perf_counter()
        for k in range(lo, hi):
            dossier_id = self.ids[k]
            at = self.clock()
            before = self.data[k]
            after = {**before, "data": {**before["data"]}}
            if trigger == "certify":
                after["data"].update(
                    certificate_no=f"GCN-{dossier_id}",
                    decision_no="123/QĐ-UBND",
                    certified_on=at.date().isoformat(),
                    valid_until="2029-03-01",
                    certificate_stars=4,
                )
            # Like the engine's entries (the after-only format): the after snapshot only.
            row = _entry(
                dossier_id, seq, trigger, source, dest, actor, at, None, after, self.hashes[k]
            )
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                UPDATE_DOSSIER,
                (
                    dest,
                    stage,
                    _sqlite_text(at),
                    seq,
                    _dumps(after["data"]),
                    _sqlite_text(at),
                    dossier_id,
                    seq - 1,
                ),
            )
            db.execute(INSERT_AUDIT, row)
            db.execute("COMMIT")
            self.hashes[k] = row[-1]
            self.data[k] = after
        self.advance_s += time.perf_counter() - started
        self.count += hi - lo

    def finish(self) -> dict[str, Any]:
        self.db.close()
        rate = self.count / self.advance_s
        say(f"floor:  {self.count} transitions in {self.advance_s:.2f} s = {rate:,.0f}/s")
        return {
            "floor_transitions_per_s": round(rate, 1),
            "floor_registrations_per_s": round(self.n / self.register_s, 1),
        }


# --- memory -----------------------------------------------------------------------------------


def bulk_ids(total: int) -> Iterator[str]:
    return (f"BULK-{i:06d}" for i in range(total))


def build_bulk(folder: Path, total: int, batch: int = 10_000) -> Path:
    """A database of ``total`` registered dossiers, consistent enough for ``audit verify``."""
    from ocop_workflow import audit, timers
    from ocop_workflow.calendar import WorkCalendar
    from ocop_workflow.engine import snapshot
    from ocop_workflow.store import audit_t, dossier_t, dumps, timer_t

    config_path = write_config(folder, f"bulk{total}")
    engine = open_engine(config_path, migrate=True)
    wf = engine.registry.get(engine.config.default_workflow)
    initial = wf.initial
    cal: WorkCalendar = engine.calendar
    plans: dict[Any, tuple[Any, list[dict[str, Any]]]] = {}
    started = time.perf_counter()
    ids = list(bulk_ids(total))
    for low in range(0, total, batch):
        dossiers, entries, timer_rows = [], [], []
        for i in range(low, min(total, low + batch)):
            dossier_id = ids[i]
            at = START + timedelta(seconds=i)
            day = cal.local_date(at)
            if day not in plans:
                plans[day] = timers.plan(
                    initial, dossier_id="-", entry_seq=1, entered_at=at, data={}, cal=cal
                )
            deadline, template = plans[day]
            row = {
                "id": dossier_id,
                "product": f"Sản phẩm {i}",
                "producer": PRODUCER,
                "commune": COMMUNE,
                "product_group": None,
                "workflow": wf.name,
                "workflow_version": wf.version,
                "state": initial.name,
                "stage": initial.stage,
                "state_entered_at": at,
                "state_entry_seq": 1,
                "deadline_at": deadline.at if deadline else None,
                "deadline_note": timers.deadline_note_json(deadline),
                "version": 1,
                "data": dumps({}),
                "created_at": at,
                "updated_at": at,
            }
            dossiers.append(row)
            after = snapshot(row, {})
            fields = {
                "dossier_id": dossier_id,
                "seq": 1,
                "trigger": "register",
                "from_state": None,
                "to_state": initial.name,
                "actor": "htx",
                "reason": None,
                "at": at,
            }
            digest = audit.entry_hash(
                **fields, data_before=None, data_after=after, prev_hash=audit.GENESIS
            )
            entries.append(
                {
                    **fields,
                    "data_before": None,
                    "data_after": dumps(after),
                    "prev_hash": audit.GENESIS,
                    "hash": digest,
                }
            )
            timer_rows.extend(
                timers.mark_waking(
                    [
                        {**t, "dossier_id": dossier_id, "created_at": at}
                        for t in template
                        if t["due_at"] > at
                    ]
                )
            )
        with engine.store.write() as conn:
            conn.execute(dossier_t.insert(), dossiers)
            conn.execute(audit_t.insert(), entries)
            conn.execute(timer_t.insert(), timer_rows)
    engine.store.dispose()
    say(
        f"memory: built a {total:,}-dossier database in {time.perf_counter() - started:.1f} s "
        "(bulk Core inserts)"
    )
    return config_path


def child_advance(config_path: Path, total: int, count: int) -> None:
    """In a fresh process: walk ``count`` dossiers spread over the table; print peak RSS."""
    quiet_logging()
    engine = open_engine(config_path, migrate=False)
    engine.registry.get(engine.config.default_workflow)
    engine.calendar.local_date(START)
    baseline = peak_rss_mb()
    every = max(1, total // count)
    ids = [f"BULK-{i:06d}" for i in range(0, total, every)][:count]
    files = document_files(config_path.parent)
    started = time.perf_counter()
    seconds = walk(engine, ids, files)
    print(
        json.dumps(
            {
                "baseline_mb": round(baseline, 1),
                "peak_mb": round(peak_rss_mb(), 1),
                "advances": len(seconds["advance"]),
                "writes": len(seconds["advance"]) + len(seconds["amend"]),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    )


def child_verify(config_path: Path) -> None:
    """In a fresh process: ``audit.verify`` over the whole database; print peak RSS."""
    from ocop_workflow.audit import verify

    engine = open_engine(config_path, migrate=False)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    report = verify(engine.store)
    print(
        json.dumps(
            {
                "baseline_mb": round(baseline, 1),
                "peak_mb": round(peak_rss_mb(), 1),
                "seconds": round(time.perf_counter() - started, 2),
                "ok": report.ok,
                "entries": report.entries_checked,
                "dossiers": report.dossiers_checked,
            }
        )
    )


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_memory(folder: Path, totals: list[int], count: int) -> tuple[dict[str, Any], Path]:
    result: dict[str, Any] = {"mem_dossiers_walked": count}
    first: Path | None = None
    for total in totals:
        config_path = build_bulk(folder, total)
        first = first or config_path
        label = f"{total // 1000}k"
        moved = run_child("--child-advance", str(config_path), str(total), str(count))
        result[f"rss_mb_{label}"] = moved["peak_mb"]
        result[f"rss_baseline_mb_{label}"] = moved["baseline_mb"]
        say(
            f"memory: {count} dossiers walked ({moved['writes']} writes) in a {total:,}-dossier "
            f"database: peak RSS {moved['peak_mb']} MB (after start-up {moved['baseline_mb']} "
            f"MB), {moved['writes'] / moved['seconds']:,.0f} writes/s"
        )
        checked = run_child("--child-verify", str(config_path))
        if not checked["ok"]:
            raise SystemExit(f"audit verify failed on the {total:,}-dossier database")
        result[f"verify_rss_mb_{label}"] = checked["peak_mb"]
        result[f"verify_s_{label}"] = checked["seconds"]
        say(
            f"memory: audit.verify of {checked['entries']:,} entries / {checked['dossiers']:,} "
            f"dossiers: {checked['seconds']} s, peak RSS {checked['peak_mb']} MB "
            f"(after start-up {checked['baseline_mb']} MB)"
        )
    assert first is not None
    return result, first


# --- start-up ---------------------------------------------------------------------------------


def bench_startup(config_path: Path, dossier_id: str, repeats: int) -> dict[str, Any]:
    script = Path(sys.executable).with_name("ocop")
    ocop = [str(script)] if script.exists() else [sys.executable, "-m", "ocop_workflow"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
    env["OCOP_CONFIG"] = str(config_path)
    # Bytecode cached as on an installed system, but in our temporary folder (not the source
    # tree): with PYTHONDONTWRITEBYTECODE inherited, every run would compile ocop_workflow's
    # source again while sqlmodel's .pyc files ship with it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(config_path.parent / "pycache")
    commands = {
        "help_s": [*ocop, "--help"],
        "show_s": [*ocop, "dossier", "show", dossier_id],
        "list_s": [*ocop, "dossier", "list", "--state", "closed"],
        "import_sqlmodel_s": [sys.executable, "-c", "import sqlmodel"],
        "python_s": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_no in range(repeats + 1):  # round 0 warms the page cache and .pyc files
        for name, command in commands.items():
            started = time.perf_counter()
            done = subprocess.run(
                command, env=env, cwd=config_path.parent, capture_output=True, check=False
            )
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
            if round_no:
                times[name].append(elapsed)
    result = {name: round(statistics.median(values), 4) for name, values in times.items()}
    result["show_ratio"] = round(result["show_s"] / result["import_sqlmodel_s"], 3)
    result["list_ratio"] = round(result["list_s"] / result["import_sqlmodel_s"], 3)
    say(
        f"start-up (median of {repeats}): ocop --help {result['help_s']} s, "
        f"ocop dossier show {result['show_s']} s, import sqlmodel {result['import_sqlmodel_s']} s"
        f", python -c pass {result['python_s']} s → show_ratio {result['show_ratio']}, "
        f"list_ratio {result['list_ratio']} (dossier list --state closed: {result['list_s']} s)"
    )
    return result


# --- main -------------------------------------------------------------------------------------


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    if keep:
        path = Path(tempfile.mkdtemp(prefix="ocop-bench-"))
        say(f"working in {path} (kept)")
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="ocop-bench-") as name:
            yield Path(name)


def unshadow() -> None:
    """This file is named transitions.py: drop its folder from the import path, or
    ``import transitions`` (the state-machine library, imported by machine.py) finds it instead."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or os.curdir).resolve() != here]
    sys.modules.pop("transitions", None)


def main(argv: list[str] | None = None) -> None:
    unshadow()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="dossiers to walk (default 10,000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: N=500, 10k-dossier memory only, 3 start-up repeats",
    )
    parser.add_argument(
        "--walk",
        type=int,
        default=None,
        help="dossiers the memory subprocess walks (default 1,000; 50 --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only the start-up part (--help, dossier show/list vs import sqlmodel) on a "
        "10k-dossier database; 10 repeats (3 with --quick)",
    )
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="only the engine's walk and the floor (throughput, p99, WAL pages per advance)",
    )
    parser.add_argument(
        "--child-advance", nargs=3, metavar=("CONFIG", "TOTAL", "COUNT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--child-verify", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_advance:
        config, total, count = args.child_advance
        child_advance(Path(config), int(total), int(count))
        return
    if args.child_verify:
        child_verify(Path(args.child_verify))
        return

    n = args.n or (500 if args.quick else 10_000)
    totals = [10_000] if args.quick else [10_000, 100_000]
    walked = args.walk or (50 if args.quick else 1_000)
    repeats = 3 if args.quick else 10
    quiet_logging()
    if args.startup_only:
        with workdir(args.keep) as folder:
            started = {"load_before": load_average()}
            started.update(bench_startup(build_bulk(folder, 10_000), "BULK-000001", repeats))
        started["load_after"] = load_average()
        started["targets"] = {
            "help_s<0.15": started["help_s"] < 0.15,
            "show_ratio<=0.6": started["show_ratio"] <= 0.6,
            "list_ratio<=0.6": started["list_ratio"] <= 0.6,
        }
        print(json.dumps(started, ensure_ascii=False), flush=True)
        return
    figures: dict[str, Any] = {
        "n": n,
        "quick": args.quick,
        "counted": f"advance calls only ({ADVANCES} per dossier); registrations and amends "
        "(attach, score, close_scoring) separately",
        "load_before": load_average(),
    }
    with workdir(args.keep) as folder:
        figures.update(bench_engine(folder, n))
        if args.engine_only:
            figures["load_after"] = load_average()
            print(json.dumps(figures, ensure_ascii=False), flush=True)
            return
        memory, config_10k = bench_memory(folder, totals, walked)
        figures.update(memory)
        figures.setdefault("rss_mb_100k", None)
        figures.update(bench_startup(config_10k, "BULK-000001", repeats))
    figures["load_after"] = load_average()
    figures["targets"] = {
        "transitions_per_s>=2500": figures["transitions_per_s"] >= 2500,
        "ratio>=0.2": figures["ratio"] >= 0.2,
        "rss_flat": figures["rss_mb_100k"] is None
        or figures["rss_mb_100k"] <= figures["rss_mb_10k"] + 5,
        "help_s<0.15": figures["help_s"] < 0.15,
        "show_ratio<=0.6": figures["show_ratio"] <= 0.6,
        "list_ratio<=0.6": figures["list_ratio"] <= 0.6,
        "wal_pages_per_advance<=12": (figures["wal_pages_per_advance"] or 99) <= 12,
        "advance_ms_p99<=3": figures["advance_ms_p99"] <= 3,
    }
    print(json.dumps(figures, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
