"""Workflow definitions: ``workflows/*.toml`` read into frozen dataclasses and checked on load.

A workflow file is data, written by people who know the OCOP rules, not Python. So every problem
is named with its file and item, all at once (not just the first), and a file with any problem is
refused as a whole: a half-valid rule set must never move a dossier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .config import KNOWN_ROLES, SYSTEM_ACTOR
from .errors import NotFound, UsageError, WorkflowFileError
from .inputs import check_date, check_finite, check_text, nfc

FIELD_TYPES = ("str", "int", "float", "date", "email")
DEADLINE_UNITS = ("working_days", "days", "months")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class FieldDef:
    """A data field a dossier may carry; ``protected`` fields are set only by the engine."""

    name: str
    type: str = "str"
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    protected: bool = False
    choices: tuple[str, ...] = ()

    def parse(self, text: str) -> Any:
        """Turn the text of a value (a data field a caller gives, an import cell) into the
        stored value, or say what is wrong, naming the field as every caller knows it."""
        where, field = f"data field '{self.name}'", f"data.{self.name}"
        check_text(text, where, multiline=self.type == "str", field=field)
        value = self._typed(text, where, field)
        if self.choices and value not in self.choices:
            raise self.refused(f"must be one of {', '.join(self.choices)}")
        if isinstance(value, int | float):
            if self.minimum is not None and value < self.minimum:
                raise self.refused(f"must be at least {self.minimum:g}")
            if self.maximum is not None and value > self.maximum:
                raise self.refused(f"must be at most {self.maximum:g}")
        return value

    def _typed(self, text: str, where: str, field: str) -> Any:
        """``text`` as a value of the field's type."""
        if self.type == "int":
            try:
                return int(text)
            except ValueError:
                raise self.refused("must be a whole number") from None
        if self.type == "float":
            try:
                number = float(text)
            except ValueError:
                raise self.refused("must be a number") from None
            return check_finite(number, where, field=field)
        if self.type == "date":
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise self.refused("must be a date YYYY-MM-DD") from None
            return check_date(day, where, field=field).isoformat()
        if self.type == "email":
            if not _EMAIL.fullmatch(text):
                raise self.refused("must be an e-mail address")
            return text
        if not text.strip():
            raise self.refused("must not be empty")
        return nfc(text)

    def refused(self, problem: str) -> UsageError:
        """The usage error of a value this field refuses: ``data field 'x': <problem>``."""
        return UsageError(f"data field '{self.name}': {problem}", fields=(f"data.{self.name}",))


@dataclass(frozen=True)
class DeadlineDef:
    """When a state must be left, why (legal basis), and what fires around that instant.

    ``amount`` of ``unit`` counted from state entry or from the date in data field
    ``from_field``. Reminders fire ``remind_before`` units before the deadline; after it an
    escalation repeats every ``escalate_every`` working days to ``escalate_to`` until the state
    is left; ``on_expiry`` names a trigger the scheduler fires (as ``system``) at the deadline.
    """

    amount: int
    unit: str
    basis: str
    from_field: str | None = None
    remind_before: tuple[int, ...] = ()
    remind_unit: str = "working_days"
    escalate_every: int | None = None
    escalate_to: tuple[str, ...] = ()
    on_expiry: str | None = None
    certificate: bool = False

    def describe(self) -> str:
        unit = self.unit.replace("_", " ")
        start = f"from {self.from_field}" if self.from_field else "from entering the state"
        return f"{self.amount} {unit} {start} ({self.basis})"


@dataclass(frozen=True)
class StateDef:
    name: str
    stage: str
    label_vi: str
    label_en: str
    initial: bool = False
    final: bool = False
    level: str | None = None
    recognise_stars: tuple[int, ...] = ()
    deadline: DeadlineDef | None = None
    council: bool = False
    forward_min_score: float | None = None
    watches: tuple[DeadlineDef, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransitionDef:
    trigger: str
    source: str
    dest: str
    roles: tuple[str, ...]
    guards: tuple[str, ...] = ()
    stamp: tuple[str, ...] = ()
    label_vi: str = ""
    label_en: str = ""
    remind: bool = True
    certificate_months: int | None = None

    @property
    def automatic(self) -> bool:
        """Fired only by the scheduler (``expire``): nobody may, nobody is reminded to."""
        return self.roles == (SYSTEM_ACTOR,)


@dataclass(frozen=True)
class ScorecardDef:
    """The council scorecard of a rule version: part maxima, star bands, council rules."""

    parts: Mapping[str, float]
    part_labels: Mapping[str, str]
    bands: tuple[tuple[int, float], ...]  # (stars, minimum mean points), highest first
    quorum: float = 0.75
    max_spread: float = 10.0
    certificate_min_stars: int = 3
    mandatory_documents: Mapping[int, tuple[str, ...]] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def stars_for(self, points: float) -> int:
        """Stars from the mean points: the highest band whose minimum is reached; else 1."""
        for stars, minimum in self.bands:
            if points >= minimum:
                return stars
        return 1


@dataclass(frozen=True)
class WorkflowDef:
    name: str
    version: str
    title: str
    legal_basis: str
    path: Path
    stages: tuple[str, ...]
    states: Mapping[str, StateDef]
    transitions: tuple[TransitionDef, ...]
    fields: Mapping[str, FieldDef]
    extra: Mapping[str, Any] = field(default_factory=dict)
    scorecard: ScorecardDef | None = None
    groups: Mapping[str, str] = field(default_factory=dict)
    documents: Mapping[str, str] = field(default_factory=dict)
    mandatory_documents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: SHA-256 of the file's canonical bytes (:func:`content_sha256`): what a dossier is pinned to.
    sha256: str = ""

    def required_documents(self, group: str | None) -> tuple[str, ...]:
        """Document kinds a dossier of product ``group`` must hold before it is submitted."""
        if group is not None and group in self.mandatory_documents:
            return self.mandatory_documents[group]
        return self.mandatory_documents.get("default", ())

    @property
    def initial(self) -> StateDef:
        return next(s for s in self.states.values() if s.initial)

    @property
    def triggers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def state(self, name: str) -> StateDef:
        try:
            return self.states[name]
        except KeyError:
            raise NotFound(f"workflow {self.name} has no state '{name}'") from None

    def transitions_from(self, state: str) -> list[TransitionDef]:
        return [t for t in self.transitions if t.source == state]

    def transition(self, trigger: str, state: str) -> TransitionDef | None:
        """The transition ``trigger`` fires from ``state``; None when not allowed there.

        Raises NotFound when the workflow has no such trigger at all (exit 3, not 4).
        """
        if trigger not in self.triggers:
            raise NotFound(
                f"workflow {self.name} has no trigger '{trigger}' "
                f"(triggers: {', '.join(self.triggers)})"
            )
        return next(
            (t for t in self.transitions if t.trigger == trigger and t.source == state), None
        )

    def parse_values(
        self, values: Mapping[str, Any], *, allow_protected: bool = False
    ) -> dict[str, Any]:
        """A mapping of data values (from any caller) → checked values (UsageError names the
        bad one).

        Numbers arrive typed from JSON and Python; each is checked through its text, so every
        caller is held to the same rules whatever form its values take.
        """
        out: dict[str, Any] = {}
        for key, raw in values.items():
            spec = self.fields.get(key)
            fields = (f"data.{key}",)
            if spec is None:
                known = ", ".join(n for n, f in self.fields.items() if not f.protected)
                raise UsageError(f"unknown data field '{key}' (fields: {known})", fields=fields)
            if spec.protected and not allow_protected:
                raise spec.refused("set only by the engine (protected)")
            if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise spec.refused("expected a string or a number")
            out[key] = spec.parse(str(raw))
        return out


# --- loading ----------------------------------------------------------------------------------


class _Problems:
    """Collects every problem of one file, each prefixed with the file and the item."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, item: str, message: str) -> None:
        self.items.append(f"{self.path}: {item}: {message}")


_WORKFLOW_KEYS = {"name", "version", "title", "legal_basis", "stages", "in_force_from"}
_STATE_KEYS = {
    "stage",
    "label_vi",
    "label_en",
    "initial",
    "final",
    "level",
    "recognise_stars",
    "deadline",
    "forward_min_score",
    "council",
    "certificate_watch",
}
_DEADLINE_KEYS = {
    "working_days",
    "days",
    "months",
    "basis",
    "from_field",
    "remind_working_days_before",
    "remind_days_before",
    "escalate_every_working_days",
    "escalate_to",
    "on_expiry",
    "certificate",
}
_TRANSITION_KEYS = {
    "trigger",
    "source",
    "dest",
    "roles",
    "guards",
    "stamp",
    "label_vi",
    "label_en",
    "remind",
    "certificate_months",
}
_FIELD_KEYS = {"type", "label", "min", "max", "protected", "choices"}
_TOP_KEYS = {"workflow", "fields", "states", "transitions", "scorecard", "groups", "documents"}
_SCORECARD_KEYS = {
    "parts",
    "part_labels",
    "bands",
    "quorum",
    "max_spread",
    "certificate_min_stars",
    "mandatory_documents",
}


def _unknown(problems: _Problems, item: str, table: Mapping[str, Any], known: set[str]) -> None:
    for key in table:
        if key not in known:
            problems.add(item, f"unknown key '{key}' (known: {', '.join(sorted(known))})")


def _get(
    problems: _Problems,
    item: str,
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    default: Any = None,
    *,
    required: bool = False,
) -> Any:
    if key not in table:
        if required:
            problems.add(item, f"missing required key '{key}'")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        problems.add(item, f"'{key}' has the wrong type ({value!r})")
        return default
    if not isinstance(value, kinds):
        problems.add(item, f"'{key}' has the wrong type ({value!r})")
        return default
    return value


def _str_tuple(
    problems: _Problems, item: str, table: Mapping[str, Any], key: str
) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(item, f"'{key}' must be a string or a list of strings")
        return ()
    return tuple(value)


def _int_tuple(
    problems: _Problems, item: str, table: Mapping[str, Any], key: str
) -> tuple[int, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        problems.add(item, f"'{key}' must be a list of whole numbers")
        return ()
    return tuple(value)


def parse_workflow(data: Mapping[str, Any], path: Path) -> tuple[WorkflowDef | None, list[str]]:
    """Build and check one workflow; returns (definition or None, every problem found)."""
    from .guards import GUARDS

    problems = _Problems(path)
    _unknown(problems, "top level", data, _TOP_KEYS)
    head = data.get("workflow")
    if not isinstance(head, dict):
        problems.add("[workflow]", "missing table [workflow] with name, version, title, stages")
        return None, problems.items
    _unknown(problems, "[workflow]", head, _WORKFLOW_KEYS)
    name = _get(problems, "[workflow]", head, "name", str, required=True)
    version = _get(problems, "[workflow]", head, "version", str, required=True)
    title = _get(problems, "[workflow]", head, "title", str, "")
    legal_basis = _get(problems, "[workflow]", head, "legal_basis", str, "")
    stages = _str_tuple(problems, "[workflow]", head, "stages")
    if not stages:
        problems.add("[workflow]", "'stages' must list the stages in order")
    in_force_from = head.get("in_force_from")
    if in_force_from is not None and not isinstance(in_force_from, date):
        problems.add("[workflow]", "'in_force_from' must be a TOML date (YYYY-MM-DD)")

    fields = _parse_fields(problems, data.get("fields", {}))
    states = _parse_states(problems, data.get("states"), stages)
    transitions = _parse_transitions(problems, data.get("transitions"), states, GUARDS, fields)
    _check_graph(problems, states, transitions)
    _check_deadlines(problems, states, transitions, fields)
    groups = _parse_labels(problems, "[groups]", data.get("groups", {}))
    documents, mandatory = _parse_documents(problems, data.get("documents", {}), groups)
    scorecard = _parse_scorecard(problems, data.get("scorecard"), documents)
    for state in states.values():
        if state.council and scorecard is None:
            problems.add(f"states.{state.name}", "council = true needs a [scorecard]")

    if problems.items or name is None or version is None:
        return None, problems.items
    return (
        WorkflowDef(
            name=name,
            version=version,
            title=title,
            legal_basis=legal_basis,
            path=path,
            stages=stages,
            states=states,
            transitions=tuple(transitions),
            fields=fields,
            extra={"in_force_from": in_force_from} if in_force_from else {},
            scorecard=scorecard,
            groups=groups,
            documents=documents,
            mandatory_documents=mandatory,
        ),
        [],
    )


def _parse_labels(problems: _Problems, item: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        problems.add(item, 'must be a table of name = "label"')
        return {}
    return dict(raw)


def _parse_documents(
    problems: _Problems, raw: Any, groups: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    if not isinstance(raw, dict):
        problems.add("[documents]", "must be a table with kinds and mandatory")
        return {}, {}
    _unknown(problems, "[documents]", raw, {"kinds", "mandatory"})
    kinds = _parse_labels(problems, "documents.kinds", raw.get("kinds", {}))
    mandatory: dict[str, tuple[str, ...]] = {}
    table = raw.get("mandatory", {})
    if not isinstance(table, dict):
        problems.add("documents.mandatory", "must be a table of group = [kinds]")
        table = {}
    for group, _value in table.items():
        item = f"documents.mandatory.{group}"
        if group != "default" and group not in groups:
            problems.add(item, f"unknown product group '{group}' (see [groups])")
        listed = _str_tuple(problems, item, table, group)
        for kind in listed:
            if kind not in kinds:
                problems.add(item, f"unknown document kind '{kind}' (see [documents.kinds])")
        mandatory[group] = listed
    return kinds, mandatory


def _parse_scorecard(
    problems: _Problems, raw: Any, documents: Mapping[str, str]
) -> ScorecardDef | None:
    if raw is None:
        return None
    item = "[scorecard]"
    if not isinstance(raw, dict):
        problems.add(item, "must be a table")
        return None
    _unknown(problems, item, raw, _SCORECARD_KEYS)
    parts_raw = _get(problems, item, raw, "parts", dict, {}, required=True)
    parts: dict[str, float] = {}
    for part, maximum in parts_raw.items():
        if isinstance(maximum, bool) or not isinstance(maximum, int | float) or maximum <= 0:
            problems.add(item, f"parts.{part}: the maximum must be a positive number")
            continue
        if not _NAME.fullmatch(part):
            problems.add(item, f"parts.{part}: part names are lower_case code names")
        parts[part] = float(maximum)
    if parts and abs(sum(parts.values()) - 100) > 1e-9:
        problems.add(item, f"parts add up to {sum(parts.values()):g}, not 100")
    bands_raw = _get(problems, item, raw, "bands", dict, {}, required=True)
    bands: list[tuple[int, float]] = []
    for stars, minimum in bands_raw.items():
        if not stars.isdigit() or not 1 <= int(stars) <= 5:
            problems.add(item, f"bands.{stars}: a band is named by its stars, 1-5")
            continue
        if isinstance(minimum, bool) or not isinstance(minimum, int | float):
            problems.add(item, f"bands.{stars}: the minimum points must be a number")
            continue
        bands.append((int(stars), float(minimum)))
    bands.sort(reverse=True)
    for (high, high_min), (low, low_min) in itertools.pairwise(bands):
        if high_min <= low_min:
            problems.add(item, f"bands: {high}★ needs more points than {low}★")
    mandatory: dict[int, tuple[str, ...]] = {}
    table = raw.get("mandatory_documents", {})
    if not isinstance(table, dict):
        problems.add(item, "mandatory_documents must be a table of stars = [kinds]")
        table = {}
    for stars, _value in table.items():
        listed = _str_tuple(problems, f"scorecard.mandatory_documents.{stars}", table, stars)
        for kind in listed:
            if kind not in documents:
                problems.add(
                    f"scorecard.mandatory_documents.{stars}", f"unknown document kind '{kind}'"
                )
        if stars.isdigit():
            mandatory[int(stars)] = listed
        else:
            problems.add(f"scorecard.mandatory_documents.{stars}", "name a star level, 1-5")
    quorum = float(_get(problems, item, raw, "quorum", (int, float), 0.75))
    if not 0 < quorum <= 1:
        problems.add(item, f"quorum must be a fraction in (0, 1], not {quorum}")
    return ScorecardDef(
        parts=parts,
        part_labels=_parse_labels(problems, "scorecard.part_labels", raw.get("part_labels", {})),
        bands=tuple(bands),
        quorum=quorum,
        max_spread=float(_get(problems, item, raw, "max_spread", (int, float), 10)),
        certificate_min_stars=_get(problems, item, raw, "certificate_min_stars", int, 3),
        mandatory_documents=mandatory,
    )


#: Keys the engine keeps in a dossier's data beside the fields (attached documents, council
#: scoring): a field of that name would let ``--set`` overwrite the engine's record.
ENGINE_DATA_KEYS = frozenset({"documents", "scoring"})


def _parse_fields(problems: _Problems, raw: Any) -> dict[str, FieldDef]:
    if not isinstance(raw, dict):
        problems.add("[fields]", "must be a table of fields")
        return {}
    out: dict[str, FieldDef] = {}
    for fname, spec in raw.items():
        item = f"fields.{fname}"
        if not isinstance(spec, dict):
            problems.add(item, "must be a table")
            continue
        if not _NAME.fullmatch(fname):
            problems.add(item, "a field name is lower-case letters, digits and _")
        elif fname in ENGINE_DATA_KEYS:
            problems.add(
                item, f"'{fname}' is the engine's own record in a dossier's data, not a field"
            )
        _unknown(problems, item, spec, _FIELD_KEYS)
        ftype = _get(problems, item, spec, "type", str, "str")
        if ftype not in FIELD_TYPES:
            problems.add(item, f"unknown type '{ftype}' (known: {', '.join(FIELD_TYPES)})")
        out[fname] = FieldDef(
            name=fname,
            type=ftype,
            label=_get(problems, item, spec, "label", str, ""),
            minimum=_get(problems, item, spec, "min", (int, float)),
            maximum=_get(problems, item, spec, "max", (int, float)),
            protected=_get(problems, item, spec, "protected", bool, False),
            choices=_str_tuple(problems, item, spec, "choices"),
        )
    return out


def _parse_states(problems: _Problems, raw: Any, stages: tuple[str, ...]) -> dict[str, StateDef]:
    if not isinstance(raw, dict) or not raw:
        problems.add("[states]", "missing: a workflow needs states")
        return {}
    out: dict[str, StateDef] = {}
    for sname, spec in raw.items():
        item = f"states.{sname}"
        if not isinstance(spec, dict):
            problems.add(item, "must be a table")
            continue
        if not _NAME.fullmatch(sname):
            problems.add(item, "state names are lower_case code names")
        _unknown(problems, item, spec, _STATE_KEYS)
        stage = _get(problems, item, spec, "stage", str, "", required=True)
        if stage and stages and stage not in stages:
            problems.add(item, f"unknown stage '{stage}' (stages: {', '.join(stages)})")
        label_vi = _get(problems, item, spec, "label_vi", str, "", required=True)
        label_en = _get(problems, item, spec, "label_en", str, "", required=True)
        stars = _int_tuple(problems, item, spec, "recognise_stars")
        for star in stars:
            if not 1 <= star <= 5:
                problems.add(item, f"recognise_stars: {star} is not a star rating 1-5")
        deadline = None
        if "deadline" in spec:
            deadline = _parse_deadline(problems, f"{item}.deadline", spec["deadline"])
        watches: tuple[DeadlineDef, ...] = ()
        if "certificate_watch" in spec:
            watch = _parse_deadline(
                problems, f"{item}.certificate_watch", spec["certificate_watch"]
            )
            if watch is not None:
                if watch.from_field is None or watch.on_expiry is not None:
                    problems.add(
                        f"{item}.certificate_watch",
                        "a certificate watch counts from a date field and fires no trigger",
                    )
                watches = (watch,)
        forward_min = _get(problems, item, spec, "forward_min_score", (int, float))
        out[sname] = StateDef(
            name=sname,
            stage=stage,
            label_vi=label_vi,
            label_en=label_en,
            initial=_get(problems, item, spec, "initial", bool, False),
            final=_get(problems, item, spec, "final", bool, False),
            level=_get(problems, item, spec, "level", str),
            recognise_stars=stars,
            deadline=deadline,
            council=_get(problems, item, spec, "council", bool, False),
            forward_min_score=None if forward_min is None else float(forward_min),
            watches=watches,
        )
    initial = [s.name for s in out.values() if s.initial]
    if len(initial) != 1:
        found = ", ".join(initial) if initial else "none"
        problems.add("[states]", f"exactly one state must have initial = true (found: {found})")
    return out


def _parse_deadline(problems: _Problems, item: str, spec: Any) -> DeadlineDef | None:
    if not isinstance(spec, dict):
        problems.add(item, "must be a table")
        return None
    _unknown(problems, item, spec, _DEADLINE_KEYS)
    units = [u for u in DEADLINE_UNITS if u in spec]
    if len(units) != 1:
        problems.add(item, f"give exactly one of {', '.join(DEADLINE_UNITS)}")
        return None
    unit = units[0]
    amount = _get(problems, item, spec, unit, int, 0)
    if amount <= 0:
        problems.add(item, f"'{unit}' must be a positive number, not {amount}")
    basis = _get(problems, item, spec, "basis", str, "", required=True)
    if "remind_working_days_before" in spec and "remind_days_before" in spec:
        problems.add(item, "give remind_working_days_before or remind_days_before, not both")
    remind_unit = "days" if "remind_days_before" in spec else "working_days"
    remind = _int_tuple(problems, item, spec, f"remind_{remind_unit}_before")
    for offset in remind:
        if offset <= 0:
            problems.add(item, f"reminder offsets must be positive, not {offset}")
    every = _get(problems, item, spec, "escalate_every_working_days", int)
    if every is not None and every <= 0:
        problems.add(item, f"'escalate_every_working_days' must be positive, not {every}")
    escalate_to = _str_tuple(problems, item, spec, "escalate_to")
    for role in escalate_to:
        if role not in KNOWN_ROLES:
            problems.add(item, f"escalate_to: unknown role '{role}'")
    if escalate_to and every is None:
        problems.add(item, "escalate_to needs escalate_every_working_days")
    return DeadlineDef(
        amount=amount,
        unit=unit,
        basis=basis,
        from_field=_get(problems, item, spec, "from_field", str),
        remind_before=tuple(sorted(set(remind), reverse=True)),
        remind_unit=remind_unit,
        escalate_every=every,
        escalate_to=escalate_to,
        on_expiry=_get(problems, item, spec, "on_expiry", str),
        certificate=_get(problems, item, spec, "certificate", bool, False),
    )


def _parse_transitions(
    problems: _Problems,
    raw: Any,
    states: Mapping[str, StateDef],
    guards: Mapping[str, Any],
    fields: Mapping[str, FieldDef],
) -> list[TransitionDef]:
    if not isinstance(raw, list) or not raw:
        problems.add("[[transitions]]", "missing: a workflow needs transitions")
        return []
    out: list[TransitionDef] = []
    seen: dict[tuple[str, str], int] = {}
    roles_known = KNOWN_ROLES | {SYSTEM_ACTOR}
    for index, spec in enumerate(raw):
        item = f"transitions[{index}]"
        if not isinstance(spec, dict):
            problems.add(item, "must be a table")
            continue
        trigger = _get(problems, item, spec, "trigger", str, "", required=True)
        item = f"transitions[{index}] (trigger '{trigger}')"
        _unknown(problems, item, spec, _TRANSITION_KEYS)
        if trigger and not _NAME.fullmatch(trigger):
            problems.add(item, "trigger names are lower_case code names")
        if trigger == "register":
            problems.add(item, "'register' is reserved for the first audit entry")
        dest = _get(problems, item, spec, "dest", str, "", required=True)
        if dest and dest not in states:
            problems.add(item, f"unknown destination state '{dest}'")
        sources = _str_tuple(problems, item, spec, "source")
        if not sources:
            problems.add(item, "missing required key 'source'")
        if sources == ("*",):
            sources = tuple(s.name for s in states.values() if not s.final and s.name != dest)
        roles = _str_tuple(problems, item, spec, "roles")
        if not roles:
            problems.add(item, "missing required key 'roles' (who may fire it)")
        for role in roles:
            if role not in roles_known:
                problems.add(item, f"unknown role '{role}'")
        guard_names = _str_tuple(problems, item, spec, "guards")
        for guard in guard_names:
            if guard not in guards:
                problems.add(item, f"unknown guard '{guard}' (known: {', '.join(sorted(guards))})")
        stamp = _str_tuple(problems, item, spec, "stamp")
        for fname in stamp:
            if fields.get(fname) is None or fields[fname].type != "date":
                problems.add(item, f"stamp: '{fname}' is not a date field of [fields]")
        for source in sources:
            if source not in states:
                problems.add(item, f"unknown source state '{source}'")
                continue
            if states[source].final:
                problems.add(item, f"'{source}' is a final state: no transition may leave it")
            key = (trigger, source)
            if key in seen:
                problems.add(
                    item,
                    f"trigger '{trigger}' from '{source}' is already defined by "
                    f"transitions[{seen[key]}]",
                )
                continue
            seen[key] = index
            out.append(
                TransitionDef(
                    trigger=trigger,
                    source=source,
                    dest=dest,
                    roles=roles,
                    guards=guard_names,
                    stamp=stamp,
                    label_vi=_get(problems, item, spec, "label_vi", str, ""),
                    label_en=_get(problems, item, spec, "label_en", str, ""),
                    # a scheduler-only trigger is nobody's to-do unless the file says otherwise
                    remind=_get(problems, item, spec, "remind", bool, roles != (SYSTEM_ACTOR,)),
                    certificate_months=_get(problems, item, spec, "certificate_months", int),
                )
            )
    return out


def _check_graph(
    problems: _Problems, states: Mapping[str, StateDef], transitions: list[TransitionDef]
) -> None:
    """Every state reachable from the initial one; every non-final state can reach a final one."""
    initial = [s.name for s in states.values() if s.initial]
    if len(initial) != 1:
        return
    forward: dict[str, set[str]] = {name: set() for name in states}
    backward: dict[str, set[str]] = {name: set() for name in states}
    for t in transitions:
        if t.source in states and t.dest in states:
            forward[t.source].add(t.dest)
            backward[t.dest].add(t.source)
    reachable = _closure(initial, forward)
    for name in states:
        if name not in reachable:
            problems.add(f"states.{name}", f"unreachable from the initial state '{initial[0]}'")
    finals = [s.name for s in states.values() if s.final]
    if not finals:
        problems.add("[states]", "no final state (final = true): dossiers could never finish")
        return
    can_finish = _closure(finals, backward)
    for name, state in states.items():
        if not state.final and name not in can_finish:
            problems.add(f"states.{name}", "cannot reach any final state")


def _closure(start: Iterable[str], edges: Mapping[str, set[str]]) -> set[str]:
    seen = set(start)
    queue = deque(seen)
    while queue:
        for nxt in edges[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _check_deadlines(
    problems: _Problems,
    states: Mapping[str, StateDef],
    transitions: list[TransitionDef],
    fields: Mapping[str, FieldDef],
) -> None:
    for name, state in states.items():
        for watch in state.watches:
            if watch.from_field is not None and (
                fields.get(watch.from_field) is None or fields[watch.from_field].type != "date"
            ):
                problems.add(
                    f"states.{name}.certificate_watch",
                    f"from_field: '{watch.from_field}' is not a date field",
                )
        deadline = state.deadline
        if deadline is None:
            continue
        item = f"states.{name}.deadline"
        if state.final:
            problems.add(item, "a final state has no deadline")
        if deadline.from_field is not None:
            spec = fields.get(deadline.from_field)
            if spec is None or spec.type != "date":
                problems.add(item, f"from_field: '{deadline.from_field}' is not a date field")
        if deadline.on_expiry is not None and not any(
            t.trigger == deadline.on_expiry and t.source == name for t in transitions
        ):
            problems.add(
                item, f"on_expiry: trigger '{deadline.on_expiry}' does not exist from '{name}'"
            )


def load_workflow_file(path: Path) -> WorkflowDef:
    definition, problems = check_workflow_file(path)
    if definition is None:
        raise WorkflowFileError(problems[0], problems)
    return definition


def content_sha256(text: str) -> str:
    """SHA-256 of a rule file's canonical bytes: UTF-8, no BOM, LF line ends.

    Canonical so that a checkout on Windows (CRLF) pins the same rules as one on Linux; any other
    change, even a comment, is a change of the file an auditor must see migrated.
    """
    canonical = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


#: A workflow file is tens of kilobytes; a FIFO or a huge file in the folder is not one.
WORKFLOW_FILE_MAX_BYTES = 4 << 20


def check_workflow_file(path: Path) -> tuple[WorkflowDef | None, list[str]]:
    from .inputs import read_small_file, toml_document

    try:
        raw = read_small_file(
            path, "workflow file", WORKFLOW_FILE_MAX_BYTES, WorkflowFileError, WorkflowFileError
        )
        data = toml_document(raw, str(path), WorkflowFileError)
    except WorkflowFileError as exc:
        return None, [exc.message]
    text = raw.decode("utf-8")
    definition, problems = parse_workflow(data, path)
    if definition is not None:
        definition = dataclasses.replace(definition, sha256=content_sha256(text))
    return definition, problems


#: A workflow's name is the plain name of its file in a workflows folder (``<name>.toml``): no
#: path separator, no leading dot, no ``..`` — a name never becomes a path outside the folder.
WORKFLOW_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*")


def check_workflow_name(name: str) -> str:
    """``name`` if it is a plain workflow name, else a usage error (exit 2) — checked before
    any file is looked for, so ``--workflow ../../evil/self`` never reaches the file system."""
    if not isinstance(name, str) or len(name) > 64 or not WORKFLOW_NAME.fullmatch(name):
        raise UsageError(
            f"workflow {name!r}: a workflow is named by its file in the workflows folder "
            "(lower-case letters, digits, '-', '_', '.'; at most 64 characters)"
        )
    return name


def packaged_workflows_dir() -> Path:
    """The rule files shipped with the package, found without any configuration.

    In a wheel they are ``ocop_workflow/workflows/*.toml`` (pyproject maps the repository's
    top-level ``workflows/`` folder there); in a source checkout or an editable install they are
    the repository's ``workflows/`` folder itself, beside the package.
    """
    here = Path(__file__).resolve().parent
    inside = here / "workflows"
    return inside if inside.is_dir() else here.parent / "workflows"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


class Registry:
    """The workflows by name: the shipped ones, and a configured folder adding or replacing some.

    Workflow ``NAME`` is the file ``NAME.toml`` of the last folder that has one — the configured
    ``[engine] workflows_dir`` before the files shipped with the package — so a configured file
    adds a workflow or replaces the shipped one of the same name without copying the rest. The
    name is checked (:func:`check_workflow_name`) and the file must declare that same name. A
    file that cannot be loaded makes only its own workflow unavailable: :meth:`get` of that name
    raises :class:`WorkflowFileError`, every other workflow still loads (:meth:`loadable`,
    :meth:`unavailable`), so one bad file never stops the dossiers of the others.
    """

    def __init__(self, *folders: Path | None, shipped: bool = True) -> None:
        chosen: list[Path] = []
        for folder in ((packaged_workflows_dir(),) if shipped else ()) + folders:
            # the same folder twice (a config naming the repository's workflows/) counts once
            if folder is not None and all(not _same(folder, f) for f in chosen):
                chosen.append(folder)
        if not chosen:
            raise WorkflowFileError("no workflows folder: the package ships none")
        self.folders: tuple[Path, ...] = tuple(chosen)
        self._cache: dict[str, WorkflowDef] = {}
        self._broken: dict[str, WorkflowFileError] = {}

    @property
    def folder(self) -> Path:
        """The folder that wins: the configured one, else the shipped one."""
        return self.folders[-1]

    def _check_folders(self) -> None:
        for folder in self.folders:
            if not folder.is_dir():
                raise WorkflowFileError(f"workflows folder {folder} not found")

    def names(self) -> list[str]:
        """The workflow names the folders hold (file names, nothing parsed)."""
        self._check_folders()
        return sorted(
            {
                p.stem
                for f in self.folders
                for p in f.glob("*.toml")
                if WORKFLOW_NAME.fullmatch(p.stem)
            }
        )

    def path_of(self, name: str) -> Path | None:
        """The file of workflow ``name``: the last folder's that exists, or None."""
        for folder in reversed(self.folders):
            path = folder / f"{name}.toml"
            if path.is_file():
                return path
        return None

    def get(self, name: str) -> WorkflowDef:
        """Workflow ``name``: NotFound (exit 3) when there is no such file, WorkflowFileError
        (exit 1) when its file does not load, UsageError (exit 2) for a name that is no name."""
        if name in self._cache:
            return self._cache[name]
        if name in self._broken:
            raise self._broken[name]
        check_workflow_name(name)
        path = self.path_of(name)
        if path is None:
            self._check_folders()
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"unknown workflow '{name}' (known: {known})")
        try:
            definition = load_workflow_file(path)
            if definition.name != name:
                raise WorkflowFileError(
                    f"{path}: declares name '{definition.name}', but a workflow lives in the "
                    f"file named after it: rename the file to {definition.name}.toml or the "
                    f"workflow to '{name}'"
                )
        except WorkflowFileError as exc:
            self._broken[name] = exc
            raise
        self._cache[name] = definition
        return definition

    def all(self) -> list[WorkflowDef]:
        """Every workflow of the folder; the first file that does not load is an error."""
        return [self.get(name) for name in self.names()]

    def loadable(self) -> list[WorkflowDef]:
        """Every workflow that loads; the others are in :meth:`unavailable`."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except WorkflowFileError:
                continue
        return out

    def state_of(self, workflow: str, state: str) -> StateDef | None:
        """The state's definition for reading commands; None when the workflow is unavailable
        (its file broken or gone) or has no such state: a list still shows the dossier."""
        try:
            return self.get(workflow).states.get(state)
        except (WorkflowFileError, NotFound, UsageError):
            return None

    def retry_unavailable(self) -> None:
        """Forget which files did not load, so the next :meth:`get` reads them again (the
        worker calls this every sweep: a file fixed meanwhile is picked up)."""
        self._broken.clear()

    def unavailable(self) -> dict[str, str]:
        """Workflow name → why its file does not load, for every file of the folder."""
        self.loadable()
        return {name: exc.message for name, exc in sorted(self._broken.items())}

    def for_dossier(self, dossier: Mapping[str, Any]) -> WorkflowDef:
        """The rules ``dossier`` started under, refusing to act on it under different ones.

        A dossier records its workflow's name, version and file content hash (SHA-256) at
        registration. If the file now holds another version or other content (someone edited
        the rules in place, even keeping the version string), acting on the dossier would
        silently move it to rules it never started under — what an auditor must be able to
        exclude. The change is refused (exit 1) until the old file is restored, or the dossiers
        are put on the new content by ``ocop workflow migrate`` (audited, one entry each).
        """
        wf = self.get(dossier["workflow"])
        pinned = dossier.get("workflow_version")
        if pinned is not None and pinned != wf.version:
            raise WorkflowFileError(
                f"dossier {dossier['id']} follows {wf.name} version {pinned}, but {wf.path} now "
                f"holds version {wf.version}: a dossier stays on the rules it started with; "
                "restore that file, or give the new rules a new workflow name"
            )
        content = dossier.get("workflow_sha256")
        if content is not None and wf.sha256 and content != wf.sha256:
            raise WorkflowFileError(
                f"dossier {dossier['id']} runs on {wf.name} as it was (sha256 {content[:12]}…), "
                f"but {wf.path} was changed in place (now {wf.sha256[:12]}…): restore the file, "
                "or migrate its dossiers onto it with a plan (`ocop workflow migrate`)"
            )
        return wf
