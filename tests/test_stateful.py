"""Random sequences of registrations and moves agree with a plain model of the workflow.

A Hypothesis state machine drives the real :class:`Engine` on a real database (a SQLite file;
a shorter run on PostgreSQL) with random users, communes, triggers, reasons, star ratings and
expected versions. A model written from the workflow definition alone (``wf.transition``, the
roles, commune scope, the guards ``reason_given`` and ``stars_within_level``) predicts each
outcome. After every step the database must agree with the model, hold one audit entry per
registration and per move, and pass ``audit.verify``. A refused command must raise the error the
model predicts and leave every row of every table exactly as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from conftest import WORKFLOWS, postgres_base_url, write_config
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ocop_workflow import audit
from ocop_workflow.calendar import WorkCalendar
from ocop_workflow.config import Config, User, load_config
from ocop_workflow.definitions import Registry, TransitionDef, WorkflowDef
from ocop_workflow.engine import Engine
from ocop_workflow.errors import (
    Conflict,
    NotFound,
    OcopError,
    PermissionDenied,
    TransitionRefused,
    UsageError,
)
from ocop_workflow.migrate import upgrade
from ocop_workflow.store import Store, audit_t, dossier_t

USERS = ("lan", "tuan", "hung", "minh", "htx_iale", "htx_other", "council")
COMMUNES = ("Ia Le", "Ia Phang")
ORGANISATIONS = ("HTX Cà phê Ia Le", "HTX Hồ tiêu Ia Le", "HTX Mật ong Ia Phang")
REASONS = (None, "", "   ", "Hồ sơ thiếu giấy chứng nhận an toàn thực phẩm")
OFFICER_ROLES = {"commune_officer", "district_officer", "province_officer", "central_officer"}
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 08:00 in Gia Lai
TZ = ZoneInfo("Asia/Ho_Chi_Minh")

#: ``--set K=V`` choices: nothing, a star rating (0 and 6 are out of range), a protected field.
SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("stars=0",),
    ("stars=1",),
    ("stars=2",),
    ("stars=3",),
    ("stars=4",),
    ("stars=5",),
    ("stars=6",),
    ("certified_on=2026-01-01",),
    ("note=Bổ sung phiếu kiểm nghiệm",),
    ("note=Đã khảo sát thực địa", "stars=4"),
)


# --- the model ----------------------------------------------------------------------------------


@dataclass
class ModelDossier:
    state: str
    commune: str
    producer: str
    group: str | None
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    documents: list[str] = field(default_factory=list)  # kinds, in attaching order


class Model:
    """What the workflow definition says should happen, with no database and no engine code."""

    def __init__(self, wf: WorkflowDef, config: Config) -> None:
        self.wf = wf
        self.config = config
        self.dossiers: dict[str, ModelDossier] = {}
        self.entries = 0

    @staticmethod
    def may_act_for(user: User, producer: str, commune: str) -> bool:
        """Register and attach: an officer covering the commune, or the producer itself there."""
        if user.roles & OFFICER_ROLES:
            return user.covers(commune)
        if "producer" in user.roles:
            return user.covers(commune) and user.organisation == producer
        return False

    def register_errors(
        self, user: User, producer: str, commune: str, dossier_id: str | None
    ) -> set[type[OcopError]]:
        errors: set[type[OcopError]] = set()
        if not self.may_act_for(user, producer, commune):
            errors.add(PermissionDenied)
        if dossier_id is not None and dossier_id in self.dossiers:
            errors.add(Conflict)
        return errors

    def advance_errors(
        self,
        dossier_id: str,
        trigger: str,
        user: User,
        reason: str | None,
        pairs: tuple[str, ...],
        expect_version: int | None,
    ) -> set[type[OcopError]]:
        """Every error that applies; the engine must raise one of them (none: it must move)."""
        dossier = self.dossiers.get(dossier_id)
        if dossier is None:
            return {NotFound}
        errors: set[type[OcopError]] = set()
        if expect_version is not None and expect_version != dossier.version:
            errors.add(Conflict)
        if trigger not in self.wf.triggers:
            errors.add(NotFound)
            return errors
        transition = self.wf.transition(trigger, dossier.state)
        if transition is None:
            errors.add(TransitionRefused)
            return errors
        if not self.permitted(user, transition, dossier):
            errors.add(PermissionDenied)
        updates = self.parse(pairs)
        if updates is None:
            errors.add(UsageError)
            updates = {}
        data = {**dossier.data, **updates}
        if any(self.guard_fails(g, transition, dossier, data, reason) for g in transition.guards):
            errors.add(TransitionRefused)
        return errors

    def guard_fails(
        self,
        name: str,
        transition: TransitionDef,
        dossier: ModelDossier,
        data: dict[str, Any],
        reason: str | None,
    ) -> bool:
        """Each guard, restated from its documented meaning (not by calling guards.py)."""
        state = self.wf.states[transition.source]
        if name == "reason_given":
            return reason is None or not reason.strip()
        if name == "stars_within_level":
            return data.get("stars") not in state.recognise_stars
        if name == "certificate_details":
            return not (data.get("certificate_no") and data.get("decision_no"))
        if name == "documents_complete":
            present = set(dossier.documents)
            return not set(self.wf.required_documents(dossier.group)) <= present
        if name == "scoring_closed":
            return True  # no council scores in this test
        if name == "score_at_least":
            return getattr(state, "forward_min_score", None) is not None
        raise AssertionError(f"the model does not know guard '{name}': teach it")

    @staticmethod
    def permitted(user: User, transition: TransitionDef, dossier: ModelDossier) -> bool:
        """A role of the transition, the dossier's commune, and a producer only its own."""
        granting = [r for r in transition.roles if r in user.roles]
        return (
            bool(granting)
            and user.covers(dossier.commune)
            and (granting != ["producer"] or user.organisation == dossier.producer)
        )

    def parse(self, pairs: tuple[str, ...]) -> dict[str, Any] | None:
        """The data ``--set`` gives, or None when a value is refused (protected, out of range)."""
        out: dict[str, Any] = {}
        for pair in pairs:
            key, _, text = pair.partition("=")
            spec = self.wf.fields.get(key)
            if spec is None or spec.protected:
                return None
            value: Any = text
            if spec.type == "int":
                value = int(text)
                if spec.minimum is not None and value < spec.minimum:
                    return None
                if spec.maximum is not None and value > spec.maximum:
                    return None
            out[key] = value
        return out

    def apply(self, dossier_id: str, trigger: str, pairs: tuple[str, ...], now: datetime) -> str:
        dossier = self.dossiers[dossier_id]
        transition = self.wf.transition(trigger, dossier.state)
        assert transition is not None
        dossier.data.update(self.parse(pairs) or {})
        for name in transition.stamp:
            dossier.data[name] = now.astimezone(TZ).date().isoformat()
        dossier.state = transition.dest
        dossier.version += 1
        self.entries += 1
        return transition.dest


# --- the machine --------------------------------------------------------------------------------


Database = Callable[[], tuple[str, Callable[[], None]]]


def dump(store: Store) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, for "a refused command changes nothing"."""
    with store.read() as conn:
        names = sorted(sa.inspect(conn).get_table_names())
        return {
            name: sorted(
                tuple(str(v) for v in row)
                for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
            )
            for name in names
        }


class DossierMachine(RuleBasedStateMachine):
    """Configured per test by :func:`machine_for` (database factory, config, workflow)."""

    new_database: Database
    config: Config
    registry: Registry
    calendar: WorkCalendar

    dossiers = Bundle("dossiers")

    def __init__(self) -> None:
        super().__init__()
        self.url, self._drop = self.new_database()
        self.store = Store(self.url)
        upgrade(self.store)
        self.now = T0
        self.engine = Engine(
            self.store,
            self.registry,
            self.config,
            clock=lambda: self.now,
            calendar=self.calendar,
        )
        self.wf = self.registry.get("ocop-1489")
        self.papers = Path(tempfile.mkdtemp(prefix="ocop-papers-"))
        self.model = Model(self.wf, self.config)
        groups = getattr(self.wf, "groups", None)
        self.group = "food" if groups else None

    def teardown(self) -> None:
        self.store.dispose()
        self._drop()
        shutil.rmtree(self.papers, ignore_errors=True)

    def _tick(self) -> None:
        self.now += timedelta(hours=1)

    def _expect_refusal(self, expected: set[type[OcopError]], action: Callable[[], Any]) -> None:
        before = dump(self.store)
        with pytest.raises(OcopError) as caught:
            action()
        assert type(caught.value) in expected, (
            f"raised {type(caught.value).__name__} ({caught.value.message}); "
            f"expected one of {sorted(e.__name__ for e in expected)}"
        )
        assert dump(self.store) == before, "a refused command changed the database"

    # --- rules ----------------------------------------------------------------------------------

    @rule(
        target=dossiers,
        user=st.sampled_from(USERS),
        own=st.booleans(),
        producer=st.sampled_from(ORGANISATIONS),
        commune=st.sampled_from(COMMUNES),
        given_id=st.sampled_from((None, None, None, "HS-IALE-1", "HS-IALE-2")),
    )
    def register(
        self, user: str, own: bool, producer: str, commune: str, given_id: str | None
    ) -> Any:
        """Anyone registers for any producer in either commune (``own``: a producer its own)."""
        self._tick()
        if own and self.config.users[user].organisation:
            producer = self.config.users[user].organisation or producer
        actor = self.config.user(user)
        expected = self.model.register_errors(actor, producer, commune, given_id)

        def action() -> dict[str, Any]:
            return self.engine.register(
                actor,
                product="Cà phê bột nguyên chất",
                producer=producer,
                commune=commune,
                group=self.group,
                dossier_id=given_id,
            )

        if expected:
            self._expect_refusal(expected, action)
            return multiple()
        row = action()
        assert row["state"] == self.wf.initial.name
        assert row["id"] not in self.model.dossiers
        self.model.dossiers[row["id"]] = ModelDossier(
            self.wf.initial.name, commune, producer, self.group
        )
        self.model.entries += 1
        return row["id"]

    def _advance(
        self,
        dossier_id: str,
        trigger: str,
        user: str,
        reason: str | None,
        pairs: tuple[str, ...],
        version: str,
    ) -> None:
        self._tick()
        actor = self.config.user(user)
        current = self.model.dossiers.get(dossier_id)
        expect_version = None
        if current is not None and version != "none":
            expect_version = current.version + {"right": 0, "stale": -1, "ahead": 1}[version]
        expected = self.model.advance_errors(
            dossier_id, trigger, actor, reason, pairs, expect_version
        )

        def action() -> Any:
            return self.engine.advance(
                dossier_id,
                trigger,
                actor,
                reason=reason,
                data=dict(pair.split("=", 1) for pair in pairs),  # as the CLI reads --set
                expect_version=expect_version,
            )

        if expected:
            event(f"refused: {'/'.join(sorted(e.__name__ for e in expected))}")
            self._expect_refusal(expected, action)
            return
        assert current is not None
        source = current.state
        moved = action()
        dest = self.model.apply(dossier_id, trigger, pairs, self.now)
        event(f"moved to {dest}")
        assert (moved.from_state, moved.to_state) == (source, dest)
        assert moved.version == current.version
        assert moved.at == self.now

    @rule(
        dossier=dossiers,
        unknown=st.sampled_from((False,) * 9 + (True,)),
        trigger=st.sampled_from((*Registry(WORKFLOWS).get("ocop-1489").triggers, "approve")),
        user=st.sampled_from(USERS),
        reason=st.sampled_from(REASONS),
        pairs=st.sampled_from(SETS),
        version=st.sampled_from(("none", "none", "right", "stale", "ahead")),
    )
    def advance_any(
        self,
        dossier: str,
        unknown: bool,
        trigger: str,
        user: str,
        reason: str | None,
        pairs: tuple[str, ...],
        version: str,
    ) -> None:
        """Any trigger of the workflow (or one it lacks) by anyone, now and then on no dossier."""
        if unknown:
            dossier = "OCOP-1999-9999"
        self._advance(dossier, trigger, user, reason, pairs, version)

    def _furthest_first(self, data: st.DataObject) -> str:
        """A dossier, the one furthest along first: Hypothesis favours early choices."""
        order = list(self.wf.states)

        def progress(dossier_id: str) -> tuple[bool, int]:
            state = self.wf.states[self.model.dossiers[dossier_id].state]
            return (state.final, -order.index(state.name))

        ids = sorted(self.model.dossiers, key=progress)
        return data.draw(st.sampled_from(ids), label="dossier")

    @precondition(lambda self: self.model.dossiers)
    @rule(
        user=st.sampled_from(("htx_iale", "lan", *USERS)),
        which=st.sampled_from(("mandatory", "mandatory", "one", "unknown")),
        data=st.data(),
    )
    def attach_documents(self, user: str, which: str, data: st.DataObject) -> None:
        """Attach the missing mandatory documents, one document, or one of an unknown kind.

        Without them ``submit_dossier`` is refused (guard ``documents_complete``), so no dossier
        would ever reach an evaluation level.
        """
        from ocop_workflow.documents import attach

        dossier = self._furthest_first(data)
        current = self.model.dossiers[dossier]
        if which == "mandatory":
            kinds = [
                k for k in self.wf.required_documents(current.group) if k not in current.documents
            ] or ["marketing"]
        elif which == "one":
            kinds = [data.draw(st.sampled_from(sorted(self.wf.documents)), label="kind")]
        else:
            kinds = ["bao_bi_san_pham"]
        actor = self.config.user(user)
        for kind in kinds:
            self._tick()
            source = self.papers / f"{kind}.pdf"
            source.write_text(f"%PDF-1.4 {kind} — hồ sơ {dossier}\n", encoding="utf-8")
            expected: set[type[OcopError]] = set()
            if kind not in self.wf.documents:
                expected.add(UsageError)
            if not self.model.may_act_for(actor, current.producer, current.commune):
                expected.add(PermissionDenied)
            if expected:
                self._expect_refusal(
                    expected, lambda k=kind, f=source: attach(self.engine, dossier, actor, k, f)
                )
                return
            done = attach(self.engine, dossier, actor, kind, source)
            if kind in current.documents:  # same content, same kind: nothing new
                assert done["already_attached"]
                continue
            assert not done["already_attached"]
            current.documents.append(kind)
            current.version += 1
            self.model.entries += 1

    @precondition(lambda self: self.model.dossiers)
    @rule(data=st.data())
    def advance_plausible(self, data: st.DataObject) -> None:
        """A trigger possible from the dossier's state, by a user holding one of its roles.

        Random triggers by random users mostly bounce off the first state; this rule walks
        dossiers deep into the workflow (as far as the guards allow without council scoring:
        submit, forward to the province, return and not_certified there).
        """
        dossier = self._furthest_first(data)
        current = self.model.dossiers[dossier]
        state = current.state
        possible = self.wf.transitions_from(state)
        if not possible:
            self._advance(dossier, "withdraw", "lan", REASONS[-1], (), "none")
            return
        # Hypothesis favours the first choices, so they lead furthest into the workflow.
        order = list(self.wf.states)
        onward = sorted(
            (t for t in possible if not self.wf.states[t.dest].final),
            key=lambda t: -order.index(t.dest),
        )
        transition = data.draw(st.sampled_from(onward * 3 + possible), label="transition")
        holders = [u for u in USERS if self.config.users[u].roles & set(transition.roles)]
        allowed = [
            u for u in holders if self.model.permitted(self.config.users[u], transition, current)
        ]
        user = data.draw(st.sampled_from(allowed * 3 + holders or USERS), label="user")
        reason = data.draw(st.sampled_from((REASONS[-1],) * 3 + REASONS), label="reason")
        power = tuple((f"stars={n}",) for n in self.wf.states[state].recognise_stars)
        pairs = data.draw(st.sampled_from(power * 4 + ((),) * 4 + SETS), label="set")
        self._advance(dossier, transition.trigger, user, reason, pairs, "none")

    @precondition(lambda self: self.model.dossiers)
    @rule(reason=st.sampled_from(REASONS[:3]), data=st.data())
    def advance_without_a_needed_reason(self, reason: str | None, data: st.DataObject) -> None:
        """A trigger guarded by ``reason_given``, by a user who may fire it, without a reason.

        (The other rules give reasons too; this one keeps dossiers alive for deeper walks.)
        """
        dossier = self._furthest_first(data)
        current = self.model.dossiers[dossier]
        guarded = [t for t in self.wf.transitions_from(current.state) if "reason_given" in t.guards]
        if not guarded:
            return
        transition = data.draw(st.sampled_from(guarded), label="transition")
        allowed = [
            u for u in USERS if self.model.permitted(self.config.users[u], transition, current)
        ]
        user = data.draw(st.sampled_from(allowed or USERS), label="user")
        self._advance(dossier, transition.trigger, user, reason, (), "none")

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def database_agrees_with_model(self) -> None:
        with self.store.read() as conn:
            rows = {
                r.id: r
                for r in conn.execute(
                    sa.select(
                        dossier_t.c.id, dossier_t.c.state, dossier_t.c.version, dossier_t.c.data
                    )
                )
            }
            entries = conn.execute(sa.select(sa.func.count()).select_from(audit_t)).scalar_one()
        assert set(rows) == set(self.model.dossiers)
        for dossier_id, expected in self.model.dossiers.items():
            row = rows[dossier_id]
            assert row.state == expected.state, dossier_id
            assert row.version == expected.version, dossier_id
            stored = json.loads(row.data)
            documents = stored.pop("documents", [])
            assert stored == expected.data, dossier_id
            assert [d["kind"] for d in documents] == expected.documents, dossier_id
        assert entries == self.model.entries

    @invariant()
    def audit_chains_verify(self) -> None:
        report = audit.verify(self.store)
        assert report.ok, report.problems
        assert report.dossiers_checked == len(self.model.dossiers)
        assert report.entries_checked == self.model.entries


def machine_for(tmp_path: Path, new_database: Database) -> type[DossierMachine]:
    config_path = write_config(tmp_path)
    config = load_config(config_path, {})
    registry = Registry(WORKFLOWS)

    class Configured(DossierMachine):
        pass

    Configured.new_database = staticmethod(new_database)  # type: ignore[assignment]
    Configured.config = config
    Configured.registry = registry
    Configured.calendar = WorkCalendar(config.timezone, config.holidays)
    return Configured


def sqlite_databases() -> Database:
    def new() -> tuple[str, Callable[[], None]]:
        folder = tempfile.mkdtemp(prefix="ocop-stateful-")
        return f"sqlite:///{folder}/ocop.db", lambda: shutil.rmtree(folder, ignore_errors=True)

    return new


def postgres_databases(base: str) -> Database:
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)

    def new() -> tuple[str, Callable[[], None]]:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

        def drop() -> None:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))

        sep = "&" if "?" in base else "?"
        return f"{base}{sep}options=-csearch_path%3D{schema}", drop

    return new


@pytest.mark.slow(8)
def test_random_moves_on_sqlite_agree_with_the_workflow_model(tmp_path: Path) -> None:
    machine = machine_for(tmp_path, sqlite_databases())
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.slow(8)
@pytest.mark.postgres
def test_random_moves_on_postgresql_agree_with_the_workflow_model(
    tmp_path: Path, pg_url: str
) -> None:
    base = postgres_base_url()
    assert base is not None
    machine = machine_for(tmp_path, postgres_databases(base))
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=10,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
