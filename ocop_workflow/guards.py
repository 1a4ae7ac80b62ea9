"""Named guard functions that workflow files refer to by name (resolved when a file is loaded).

A guard looks at the proposed move and returns None when it passes, or one sentence saying why it
fails — a :class:`Failure` when the caller fixes it by giving an input (a reason, a data field),
which it names so that each edge can say how its callers give it. The engine evaluates every
guard of a transition and reports every failure at once, so an officer fixes all the problems in
one go instead of one per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .definitions import StateDef, TransitionDef, WorkflowDef


@dataclass(frozen=True)
class GuardContext:
    """What a guard may look at: the workflow, the move, the dossier's data with the caller's."""

    workflow: WorkflowDef
    transition: TransitionDef
    state: StateDef
    dossier: Mapping[str, Any]
    data: Mapping[str, Any]
    reason: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """A failed guard the caller fixes with ``fields``, named as the facade takes them
    (``reason``, ``data.<field>``): the sentence stays the same for every caller."""

    text: str
    fields: tuple[str, ...]


Guard = Callable[[GuardContext], str | Failure | None]


def reason_given(ctx: GuardContext) -> Failure | None:
    """Returning, rejecting, withdrawing and revoking must say why (the producer reads it)."""
    if ctx.reason is None or not ctx.reason.strip():
        return Failure(f"'{ctx.transition.trigger}' needs a reason", ("reason",))
    return None


def stars_within_level(ctx: GuardContext) -> str | None:
    """A level may recognise only the stars the rules give it (e.g. province 3-4★ under 1489)."""
    power = ctx.state.recognise_stars
    stars = ctx.data.get("stars")
    if not power:
        return f"{ctx.state.name} may not recognise stars"
    allowed = ", ".join(f"{s}★" for s in power)
    if stars is None:
        return (
            "no recognised stars recorded: the council's chair closes the scoring "
            f"(this level may recognise {allowed})"
        )
    card = ctx.workflow.scorecard
    if card is not None and stars < card.certificate_min_stars:
        return f"{stars}★ earns no certificate (at least {card.certificate_min_stars}★ does)"
    if stars not in power:
        return f"{stars}★ is beyond the power of {ctx.state.name} (it may recognise {allowed})"
    return None


def documents_complete(ctx: GuardContext) -> str | None:
    """A dossier goes to evaluation only with every mandatory document of its product group."""
    required = ctx.workflow.required_documents(ctx.dossier.get("product_group"))
    present = {d.get("kind") for d in ctx.data.get("documents", [])}
    missing = [kind for kind in required if kind not in present]
    if not missing:
        return None
    named = "; ".join(f"{k} ({ctx.workflow.documents.get(k, k)})" for k in missing)
    return f"missing mandatory documents: {named}"


def current_scoring(ctx: GuardContext) -> dict[str, Any] | None:
    """This level's scoring of the current round (state entry), or None if not started."""
    level = ctx.state.level
    scoring = ctx.data.get("scoring", {}).get(level or "")
    if not scoring or scoring.get("round") != ctx.dossier.get("state_entry_seq"):
        return None
    return dict(scoring)


def scoring_closed(ctx: GuardContext) -> str | None:
    """Stars come only from a council whose chair has closed the scoring of this round."""
    scoring = current_scoring(ctx)
    if scoring is None:
        return f"the {ctx.state.level} council has not scored this dossier yet"
    if not scoring.get("closed"):
        return f"the {ctx.state.level} council's scoring is not closed by its chair yet"
    return None


def score_at_least(ctx: GuardContext) -> str | None:
    """Forwarding needs the level's threshold (e.g. ≥ 90 points for the central council)."""
    minimum = ctx.state.forward_min_score
    if minimum is None:
        return None
    scoring = current_scoring(ctx)
    if scoring is None or not scoring.get("closed"):
        return f"forwarding needs a closed council score of at least {minimum:g} points"
    score = float(scoring["result"]["score"])
    if score < minimum:
        return f"score {score:g} is below the {minimum:g} points needed to forward"
    return None


def certificate_details(ctx: GuardContext) -> Failure | None:
    """A certificate names its number and the recognition decision (quyết định công nhận) —
    its own: a certificate that supersedes another (an upgrade, a renewal) does not carry the
    numbers of the one before, which stay in the data until then (that one is still valid)."""
    import json

    from .policy import CERTIFICATE_FIELDS

    before = json.loads(ctx.dossier.get("data") or "{}")
    superseded = before if before.get("certified_on") else {}
    missing = [
        k for k in CERTIFICATE_FIELDS if not ctx.data.get(k) or ctx.data[k] == superseded.get(k)
    ]
    if not missing:
        return None
    plural = "s" if len(missing) > 1 else ""
    text = f"record the certificate: data field{plural} {', '.join(missing)} needed"
    if superseded:
        text += " (new numbers: those of the certificate it supersedes stay with that one)"
    return Failure(text, tuple(f"data.{k}" for k in missing))


#: The names workflow files may use in ``guards = [...]``.
GUARDS: Mapping[str, Guard] = {
    "reason_given": reason_given,
    "stars_within_level": stars_within_level,
    "documents_complete": documents_complete,
    "scoring_closed": scoring_closed,
    "score_at_least": score_at_least,
    "certificate_details": certificate_details,
}
