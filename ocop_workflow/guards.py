"""Named guard functions that workflow files refer to by name (resolved when a file is loaded).

A guard looks at the proposed move and returns None when it passes, or one sentence saying why it
fails. The engine evaluates every guard of a transition and reports every failure at once, so an
officer fixes all the problems in one go instead of one per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .definitions import StateDef, TransitionDef, WorkflowDef


@dataclass(frozen=True)
class GuardContext:
    """What a guard may look at: the workflow, the move, the dossier's data after ``--set``."""

    workflow: WorkflowDef
    transition: TransitionDef
    state: StateDef
    dossier: Mapping[str, Any]
    data: Mapping[str, Any]
    reason: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)


Guard = Callable[[GuardContext], str | None]


def reason_given(ctx: GuardContext) -> str | None:
    """Returning, rejecting, withdrawing and revoking must say why (the producer reads it)."""
    if ctx.reason is None or not ctx.reason.strip():
        return f"'{ctx.transition.trigger}' needs a reason: give --reason TEXT"
    return None


def stars_within_level(ctx: GuardContext) -> str | None:
    """A level may recognise only the stars the rules give it (e.g. province 3-4★ under 1489)."""
    power = ctx.state.recognise_stars
    stars = ctx.data.get("stars")
    if not power:
        return f"{ctx.state.name} may not recognise stars"
    allowed = ", ".join(f"{s}★" for s in power)
    if stars is None:
        return f"no recognised stars recorded: set stars (this level may recognise {allowed})"
    if stars not in power:
        return f"{stars}★ is beyond the power of {ctx.state.name} (it may recognise {allowed})"
    return None


GUARDS: Mapping[str, Guard] = {
    "reason_given": reason_given,
    "stars_within_level": stars_within_level,
}
