"""Council scoring (Hội đồng đánh giá, phân hạng): individual scores, quorum, agreement, stars.

Each member's score of the three scorecard parts is recorded (and audited) on its own. The chair
closes the scoring; closing checks the council's rules, each a named rule with its own message:
``council_quorum`` (at least the quorum of members scored, the chair among them) and
``scores_agree`` (members' totals at most ``max_spread`` points apart — otherwise the council
discusses and re-scores). The result is the mean; stars come from the rule version's bands, capped
by the mandatory criteria of each star level. From then on ``score`` and ``stars`` are what the
council decided: nobody sets them by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .config import Council, User
from .definitions import ScorecardDef, StateDef, WorkflowDef
from .engine import Engine
from .errors import NotFound, PermissionDenied, TransitionRefused, UsageError
from .inputs import check_finite, check_text


def record_score(
    engine: Engine,
    dossier_id: str,
    actor: User,
    *,
    member: str,
    parts: Mapping[str, float],
    note: str | None = None,
    council_key: str | None = None,
) -> dict[str, Any]:
    """One member's score for the current round; the member or the chair records it."""
    if note is not None:
        check_text(note, "note", multiline=True, field="note")

    def change(row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        # Here, after the policy's first check (``Engine.amend``): asked before it, "unknown
        # member" against a refusal told anyone who may see a dossier which user keys exist.
        wf, state, council = _scoring_context(engine, row, data, council_key)
        # one answer for a key of [users] and any other name: a council member who may
        # score (themselves) learns nothing of which user keys exist
        if member not in council.members:
            raise NotFound(f"{member} is not a member of council {council.key} ({council.title})")
        engine.policy.check_score(actor, council, row, member=member)
        card = _scorecard(wf)
        checked = _check_parts(card, parts)
        scoring = _round(data, row, state, council)
        if scoring["closed"]:
            raise TransitionRefused(
                f"the {state.level} council's scoring of this round is closed; "
                "the chair may open a re-score, giving a reason"
            )
        if member in scoring["scores"]:
            previous = scoring["scores"][member]["total"]
            raise TransitionRefused(
                f"{member} has already scored this round ({previous:g} points); the chair may "
                f"open a re-score of {member}'s score, giving a reason"
            )
        scoring["scores"][member] = {
            **checked,
            "total": round(sum(checked.values()), 2),
            "note": note,
            "at": engine.clock().isoformat(),
        }
        return data

    said = f"score of {member}" + (f": {note}" if note else "")
    _, data = engine.amend(dossier_id, actor, "score", change, reason=said)
    return _summary(data, engine, dossier_id)


def close_scoring(
    engine: Engine, dossier_id: str, actor: User, *, council_key: str | None = None
) -> dict[str, Any]:
    """The chair closes the round: quorum and agreement checked, mean, stars, caps."""

    def change(row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        wf, state, council = _scoring_context(engine, row, data, council_key)
        engine.policy.check_chair(actor, council, row, "closes the scoring")
        card = _scorecard(wf)
        scoring = _round(data, row, state, council)
        if scoring["closed"]:
            raise TransitionRefused("the scoring of this round is already closed")
        failures = council_rule_failures(card, council, scoring["scores"])
        if failures:
            raise TransitionRefused("scoring cannot be closed: " + "; ".join(failures), failures)
        totals = [s["total"] for s in scoring["scores"].values()]
        exact = sum(totals) / len(totals)
        mean = round(exact, 2)
        by_points = card.stars_for(round(exact, 6))  # the band of the mean, not of its rounding
        stars, capped = cap_stars(wf, card, by_points, data)
        scoring["closed"] = True
        scoring["result"] = {
            "score": mean,
            "stars_by_points": by_points,
            "stars": stars,
            "capped": capped,
            "present": sorted(scoring["scores"]),
            "absent": [m for m in council.members if m not in scoring["scores"]],
        }
        data["score"] = mean
        data["stars"] = stars
        return data

    _, data = engine.amend(dossier_id, actor, "close_scoring", change)
    return _summary(data, engine, dossier_id)


def rescore(
    engine: Engine,
    dossier_id: str,
    actor: User,
    *,
    reason: str | None,
    member: str | None = None,
    council_key: str | None = None,
) -> dict[str, Any]:
    """The chair clears the round's scores (or one member's) so they are given again.

    The cleared scores stay in the audit trail: re-scoring never erases what was given.
    """
    if not reason or not reason.strip():
        raise TransitionRefused("reason_given: a re-score needs a reason", fields=("reason",))

    def change(row: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        _, state, council = _scoring_context(engine, row, data, council_key)
        engine.policy.check_chair(actor, council, row, "opens a re-score")
        scoring = _round(data, row, state, council)
        if member is not None:
            if member not in scoring["scores"]:
                raise NotFound(f"{member} has no score in this round to clear")
            del scoring["scores"][member]
        else:
            scoring["scores"] = {}
        scoring["closed"] = False
        scoring.pop("result", None)
        data.pop("score", None)
        data.pop("stars", None)
        return data

    _, data = engine.amend(dossier_id, actor, "rescore", change, reason=reason)
    return _summary(data, engine, dossier_id)


def council_rule_failures(
    card: ScorecardDef, council: Council, scores: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every council rule the round breaks, each named (quorum, chair present, agreement)."""
    failures = []
    needed = math.ceil(card.quorum * len(council.members) - 1e-9)
    if len(scores) < needed:
        failures.append(
            f"council_quorum: {len(scores)} of {len(council.members)} members scored; "
            f"at least {needed} ({card.quorum:.0%}) must"
        )
    if council.chair not in scores:
        failures.append(f"council_quorum: the chair ({council.chair}) must be present and score")
    if scores:
        low = min(scores.items(), key=lambda kv: kv[1]["total"])
        high = max(scores.items(), key=lambda kv: kv[1]["total"])
        spread = round(high[1]["total"] - low[1]["total"], 6)  # 64.4 - 54.4 is 10.000000000000007
        if spread > card.max_spread:
            failures.append(
                f"scores_agree: totals differ by {spread:g} points ({low[0]} {low[1]['total']:g}, "
                f"{high[0]} {high[1]['total']:g}); more than {card.max_spread:g} apart, the "
                "council must discuss and re-score"
            )
    return failures


def cap_stars(
    wf: WorkflowDef, card: ScorecardDef, stars: int, data: Mapping[str, Any]
) -> tuple[int, list[str]]:
    """Lower the stars while a star level's mandatory criteria (documents) are not met."""
    present = {d.get("kind") for d in data.get("documents", [])}
    capped = []
    while stars > 1:
        missing = [k for k in card.mandatory_documents.get(stars, ()) if k not in present]
        if not missing:
            break
        names = ", ".join(f"{k} ({wf.documents.get(k, k)})" for k in missing)
        capped.append(f"{stars}★ needs {names}")
        stars -= 1
    return stars, capped


def _scoring_context(
    engine: Engine, row: Mapping[str, Any], data: Mapping[str, Any], council_key: str | None
) -> tuple[WorkflowDef, StateDef, Council]:
    """The workflow, the state and the acting council: the one named, else the council whose
    round this is (``_round``: a round is its council's, so it need not be named again where
    several councils of the level cover the commune), else the one covering the commune."""
    wf = engine.registry.for_dossier(row)
    state = wf.state(row["state"])
    if not state.council or state.level is None:
        raise TransitionRefused(
            f"dossier {row['id']} is in state {state.name}, where no council scores"
        )
    if council_key is None:
        scoring = data.get("scoring", {}).get(state.level) or {}
        if scoring.get("round") == row["state_entry_seq"]:
            council_key = scoring.get("council")
    return wf, state, find_council(engine, state.level, row["commune"], council_key)


def find_council(engine: Engine, level: str, commune: str, key: str | None) -> Council:
    councils = engine.config.councils
    if key is not None:
        council = councils.get(key)
        if council is None:
            raise NotFound(
                f"unknown council '{key}' (see [councils] in {engine.config.path})",
                fields=("council",),
            )
        if council.level != level:
            raise UsageError(
                f"council {key} is a {council.level} council, not a {level} one",
                fields=("council",),
            )
        return council
    found = [c for c in councils.values() if c.level == level and c.covers(commune)]
    if not found:
        raise NotFound(
            f"no {level} council covers commune {commune}: add one to [councils] in "
            f"{engine.config.path}"
        )
    if len(found) > 1:
        raise UsageError(
            f"a council is needed: several {level} councils cover {commune} "
            f"({', '.join(c.key for c in found)})",
            fields=("council",),
        )
    return found[0]


def _scorecard(wf: WorkflowDef) -> ScorecardDef:
    if wf.scorecard is None:
        raise TransitionRefused(f"workflow {wf.name} has no [scorecard]")
    return wf.scorecard


def _check_parts(card: ScorecardDef, parts: Mapping[str, float]) -> dict[str, float]:
    checked = {}
    for part, maximum in card.parts.items():
        named = f"part {part.upper()} ({card.part_labels.get(part, part)})"
        if part not in parts or parts[part] is None:
            raise UsageError(f"{named} is required: 0 to {maximum:g} points", fields=(part,))
        value = check_finite(float(parts[part]), named, field=part)
        if not 0 <= value <= maximum:
            raise UsageError(
                f"{named}: {value:g} is out of range, it scores 0 to {maximum:g}", fields=(part,)
            )
        checked[part] = value
    return checked


def _round(
    data: dict[str, Any], row: Mapping[str, Any], state: StateDef, council: Council
) -> dict[str, Any]:
    """This level's scoring for the current state entry, started afresh for a new round.

    A round is its council's: where several councils of a level cover a commune, another one's
    members or chair may not add to it, close it or clear it (``PermissionDenied``) — its quorum
    is counted over its own members only."""
    assert state.level is not None
    scorings = data.setdefault("scoring", {})
    scoring = scorings.get(state.level)
    if scoring and scoring.get("round") == row["state_entry_seq"]:
        if scoring.get("council") != council.key:
            raise PermissionDenied(
                f"this round of the {state.level} scoring is council {scoring.get('council')}'s; "
                f"council {council.key} may not score, close or re-score it"
            )
    else:
        scoring = {
            "round": row["state_entry_seq"],
            "council": council.key,
            "scores": {},
            "closed": False,
        }
        scorings[state.level] = scoring
    return scoring


def _summary(data: Mapping[str, Any], engine: Engine, dossier_id: str) -> dict[str, Any]:
    """What ``ocop score --json`` prints: the dossier's scorings by level and the result."""
    return {
        "dossier": dossier_id,
        "scoring": data.get("scoring", {}),
        "score": data.get("score"),
        "stars": data.get("stars"),
    }
