"""Who may do what: the one place that decides, whichever way a request comes in.

Every command that writes — register, import, advance, attach, score, amend — asks a
:class:`Policy` before it touches the database, and so does every way in (the CLI, the importer,
the server): the rules cannot be walked around by taking another door. Reads ask it too:
:meth:`Policy.can_read` for one dossier and :meth:`Policy.read_filter` for a query.

The rules, in one table (``communes`` is the user's scope from config.toml, ``"*"`` = all):

=====================  ===============================================================
act                    who may
=====================  ===============================================================
register               an officer (commune, district, province, central, records)
                       covering the commune; a producer for its own organisation in
                       its communes
import (new ideas)     the same as register: rows in the initial state, no protected
                       field, no ``state_entered_at``
import (migration)     a ``records_officer`` covering the commune: rows placed mid-cycle
                       (``state`` other than the initial one, ``state_entered_at``) or
                       carrying protected fields (stars, score, certificate dates…) or the
                       certificate's numbers
advance                a role the transition lists, covering the commune; a producer
                       only for its own organisation; ``expire`` only by ``system``;
                       the certificate's numbers (``certificate_no``, ``decision_no``)
                       only with a transition that issues the certificate
attach                 as register, on the dossier's producer and commune
score                  the member themself or the council's chair, of a council of the
                       dossier's level that covers the dossier's commune
close / re-score       that council's chair
migrate rules          a province or central officer covering every commune ("*"):
                       ``ocop workflow migrate`` moves every running dossier of a workflow
read                   central officers, auditors and ``system``: everything;
                       commune, district, province and records officers: their communes;
                       a producer: its organisation's dossiers; a council member or
                       chair: the dossiers now before one of their councils
=====================  ===============================================================

Refusals raise :class:`~ocop_workflow.errors.PermissionDenied` (exit 6) naming every reason.
The policy reads only the user, the dossier row and the configuration; it never writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .config import SYSTEM_ACTOR, Config, Council, User
from .errors import PermissionDenied

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .definitions import Registry, TransitionDef

#: Officers who register and attach for producers of the communes they cover.
OFFICER_ROLES = frozenset(
    {"commune_officer", "district_officer", "province_officer", "central_officer"}
)
#: The records-migration role: places dossiers mid-cycle and imports protected fields.
RECORDS_ROLE = "records_officer"
#: Read-only inspectors (the audit office, an inspector): read everything, write nothing.
AUDITOR_ROLE = "auditor"
#: Roles that read every dossier whatever their commune scope.
READ_ALL_ROLES = frozenset({"central_officer", AUDITOR_ROLE, SYSTEM_ACTOR})
#: Roles that read the dossiers of the communes they cover.
READ_SCOPED_ROLES = frozenset(
    {"commune_officer", "district_officer", "province_officer", RECORDS_ROLE}
)
#: Who may migrate dossiers in flight to other rules (``ocop workflow migrate``).
MIGRATING_ROLES = frozenset({"province_officer", "central_officer"})
#: The ``Engine.amend`` events the policy knows; any other event is refused (fail closed).
COUNCIL_EVENTS = frozenset({"score", "close_scoring", "rescore"})
#: The certificate's own numbers, which the ``certificate_details`` guard asks of ``certify``:
#: recorded with the transition that issues the certificate, or by a records migration. Given
#: earlier (a producer at registration), they satisfied that guard with numbers of the
#: producer's choosing.
CERTIFICATE_FIELDS = ("certificate_no", "decision_no")


def advance_problems(
    user: User, transition: TransitionDef, dossier: Mapping[str, Any]
) -> list[str]:
    """Every reason ``user`` may not fire ``transition`` on ``dossier`` (empty when they may).

    All of them, not the first: an officer told only "wrong role" who then gets the role would
    next be told "wrong commune"; ``dossier triggers`` must say everything that stands in the way.
    """
    granting = [role for role in transition.roles if role in user.roles]
    if not granting and transition.automatic:
        return [f"only the scheduler (system) fires '{transition.trigger}'"]
    problems: list[str] = []
    if not granting:
        problems.append(
            f"{user.key} lacks the role for '{transition.trigger}' "
            f"(needs {' or '.join(transition.roles)})"
        )
    if not user.covers(dossier["commune"]):
        problems.append(not_covered(user, dossier["commune"]))
    if granting == ["producer"] and user.organisation != dossier["producer"]:
        problems.append(f"{user.key} acts for {user.organisation}, not for {dossier['producer']}")
    return problems


def not_covered(user: User, commune: str) -> str:
    """The scope refusal, naming the communes the user does cover (a typo shows at once)."""
    covered = ", ".join(sorted(user.communes)) or "none"
    return f"{user.key} does not cover commune {commune} (covers: {covered})"


def act_for_problems(user: User, producer: str, commune: str) -> list[str]:
    """Why ``user`` may not register or attach for ``producer`` in ``commune`` (empty: may)."""
    if user.roles & OFFICER_ROLES:
        return [] if user.covers(commune) else [not_covered(user, commune)]
    if "producer" in user.roles:
        problems = []
        if not user.covers(commune):
            problems.append(not_covered(user, commune))
        if user.organisation != producer:
            problems.append(f"{user.key} acts only for {user.organisation}, not for {producer}")
        return problems
    return [f"{user.key} needs the producer role or an officer role for this"]


class Policy:
    """The decisions of one configuration (its users and councils) over its workflows.

    ``registry`` is needed only for council members' reads (which states are before a council);
    without it a council member reads nothing by right of the council.
    """

    def __init__(self, config: Config, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry

    def check_migrate(self, user: User) -> None:
        """``ocop workflow migrate``: changing the rules under every running dossier of a workflow
        is the programme office's decision, for the whole database (every commune)."""
        problems = []
        if not user.roles & MIGRATING_ROLES:
            problems.append(
                f"{user.key} may not migrate dossiers: needs {' or '.join(sorted(MIGRATING_ROLES))}"
            )
        if "*" not in user.communes:
            problems.append(f"{user.key} does not cover every commune (a migration touches all)")
        _refuse(problems)

    # --- creating dossiers ----------------------------------------------------------------------

    def check_register(self, user: User, *, producer: str, commune: str) -> None:
        """A new dossier in the initial state (``register``, or an import of a new idea)."""
        problems = act_for_problems(user, producer, commune)
        if problems and RECORDS_ROLE in user.roles and user.covers(commune):
            problems = []
        _refuse(problems)

    def check_create(
        self, user: User, *, producer: str, commune: str, migration: Sequence[str] = ()
    ) -> None:
        """A new dossier; ``migration`` lists what makes it a records migration (may be empty).

        Placing a dossier mid-cycle or with protected fields (stars, score, a certificate)
        skips the steps — the council, the decision — that would have produced them. That is a
        records officer's act, never a producer's nor an ordinary officer's: a producer who could
        import ``state=promotion, stars=5`` would certify itself.
        """
        if not migration:
            self.check_register(user, producer=producer, commune=commune)
            return
        if RECORDS_ROLE in user.roles and user.covers(commune):
            return
        scope = "" if RECORDS_ROLE not in user.roles else f" (not covering commune {commune})"
        raise PermissionDenied(
            f"{user.key} may not import {', '.join(migration)}: a dossier placed mid-cycle or "
            f"with protected fields is a records migration, for a {RECORDS_ROLE} covering "
            f"commune {commune}{scope}"
        )

    # --- acting on a dossier -------------------------------------------------------------------

    def check_advance(
        self, user: User, transition: TransitionDef, dossier: Mapping[str, Any]
    ) -> None:
        _refuse(advance_problems(user, transition, dossier))

    def check_data(self, user: User, transition: TransitionDef, fields: Iterable[str]) -> None:
        """Values given with ``transition``: the certificate's numbers only with a transition
        that issues a certificate or asks for its numbers (``certificate_details``; whoever
        may fire it), else nobody but ``system``."""
        early = [f for f in fields if f in CERTIFICATE_FIELDS]
        issues = transition.certificate_months is not None or (
            "certificate_details" in transition.guards  # the one that asks for them
        )
        if early and not issues and user.key != SYSTEM_ACTOR:
            raise PermissionDenied(
                f"{', '.join(early)}: recorded with the transition that issues the certificate "
                f"(certify), not with '{transition.trigger}'"
            )

    def check_attach(self, user: User, dossier: Mapping[str, Any]) -> None:
        """Attaching a document: as register, on the dossier's producer and commune — the
        producer itself, or an officer or records officer covering the commune (whose
        migration from the spreadsheets brings the scans of the dossiers it places)."""
        self.check_register(user, producer=dossier["producer"], commune=dossier["commune"])

    def check_score(
        self, user: User, council: Council, dossier: Mapping[str, Any], *, member: str
    ) -> None:
        """Entering ``member``'s score: the member or the chair, of a council covering it."""
        problems = self._council_scope(council, dossier)
        if user.key not in (member, council.chair):
            problems.append(
                f"{user.key} may not enter {member}'s score: only the member or the chair "
                f"({council.chair}) may"
            )
        _refuse(problems)

    def check_chair(
        self, user: User, council: Council, dossier: Mapping[str, Any], act: str
    ) -> None:
        """Closing or re-opening a round: the chair of a council covering the dossier."""
        problems = self._council_scope(council, dossier)
        if user.key != council.chair:
            problems.append(f"only the chair ({council.chair}) {act}")
        _refuse(problems)

    def check_amend(self, user: User, event: str, dossier: Mapping[str, Any]) -> None:
        """The gate of every data change that does not move a dossier (``Engine.amend``).

        Known events get their coarse check here (the fine one — which council, which member —
        runs where the council is known); an unknown event is refused: nothing writes unasked.
        """
        if event == "attach":
            self.check_attach(user, dossier)
            return
        if event in COUNCIL_EVENTS:
            if not any(
                user.key in c.members and c.covers(dossier["commune"])
                for c in self.config.councils.values()
            ):
                raise PermissionDenied(
                    f"{user.key} sits on no council covering commune {dossier['commune']}"
                )
            return
        raise PermissionDenied(f"no rule lets anyone make the change '{event}'")

    @staticmethod
    def _council_scope(council: Council, dossier: Mapping[str, Any]) -> list[str]:
        if council.covers(dossier["commune"]):
            return []
        return [
            f"council {council.key} does not cover commune {dossier['commune']} "
            f"(it covers {', '.join(sorted(council.communes))})"
        ]

    # --- reading -------------------------------------------------------------------------------

    def can_read(self, user: User, dossier: Mapping[str, Any]) -> bool:
        """May ``user`` see ``dossier`` (a row with commune, producer, workflow, state)?"""
        if user.roles & READ_ALL_ROLES:
            return True
        if user.roles & READ_SCOPED_ROLES and user.covers(dossier["commune"]):
            return True
        if "producer" in user.roles and user.organisation == dossier["producer"]:
            return True
        return any(
            c.covers(dossier["commune"]) and (dossier["workflow"], dossier["state"]) in pairs
            for c, pairs in self._councils_of(user)
        )

    def check_read(self, user: User, dossier: Mapping[str, Any]) -> None:
        """``can_read`` or a refusal; a server may prefer to answer "not found" instead."""
        if not self.can_read(user, dossier):
            raise PermissionDenied(f"{user.key} may not read dossier {dossier['id']}")

    def reads_all(self, user: User) -> bool:
        """May ``user`` read every dossier (``read_filter`` is None), asked without building a
        clause."""
        scoped = bool(user.roles & READ_SCOPED_ROLES)
        return bool(user.roles & READ_ALL_ROLES or (scoped and "*" in user.communes))

    def read_filter(self, user: User) -> sa.ColumnElement[bool] | None:
        """A WHERE clause on ``dossier_t`` selecting what ``user`` may read; None: everything.

        The same rules as :meth:`can_read`, for listing queries (``query.where(clause)``).
        """
        scoped = bool(user.roles & READ_SCOPED_ROLES)
        if self.reads_all(user):
            return None  # (before importing SQLAlchemy: a plain SQLite read needs none)
        import sqlalchemy as sa

        from .store import dossier_t

        c = dossier_t.c
        clauses: list[sa.ColumnElement[bool]] = []
        if scoped:
            clauses.append(c.commune.in_(sorted(user.communes)))
        if "producer" in user.roles and user.organisation:
            clauses.append(c.producer == user.organisation)
        for council, pairs in self._councils_of(user):
            if not pairs:
                continue
            before = sa.or_(*[sa.and_(c.workflow == w, c.state == s) for w, s in sorted(pairs)])
            if "*" not in council.communes:
                before = sa.and_(before, c.commune.in_(sorted(council.communes)))
            clauses.append(before)
        return sa.or_(*clauses) if clauses else sa.false()

    def _councils_of(self, user: User) -> list[tuple[Council, frozenset[tuple[str, str]]]]:
        """The user's councils, each with the (workflow, state) pairs where it scores."""
        mine = [c for c in self.config.councils.values() if user.key in c.members]
        if not mine or self.registry is None:
            return [(c, frozenset()) for c in mine]
        by_level: dict[str, set[tuple[str, str]]] = {}
        for wf in self.registry.loadable():
            for state in wf.states.values():
                if state.council and state.level is not None:
                    by_level.setdefault(state.level, set()).add((wf.name, state.name))
        return [(c, frozenset(by_level.get(c.level, ()))) for c in mine]


def _refuse(problems: Iterable[str]) -> None:
    problems = list(problems)
    if problems:
        raise PermissionDenied("; ".join(problems))
