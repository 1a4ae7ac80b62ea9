"""One ``transitions`` Machine per workflow definition, built once; dossiers are bound per move.

The machine decides whether a trigger may fire from a state and where it leads. It holds no
dossier: a small plain object is bound for one operation and thrown away, because ``add_model``
on a shared machine is quadratic in the models held and a machine per dossier costs ~60 KB and
milliseconds to build (design.md). Guards are evaluated by the engine beforehand, all of them,
so that every failure can be named; the machine never does I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import TransitionRefused

if TYPE_CHECKING:
    from transitions import Machine

    from .definitions import TransitionDef, WorkflowDef


class _Bound:
    """The dossier as the machine sees it for one move: nothing but its state."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


def machine_for(workflow: WorkflowDef) -> Machine:
    """The machine of ``workflow``, built on first use and kept as long as the definition.

    It is kept on the definition object itself, not in a module-level dict keyed by
    ``id(workflow)``: a process that loads definitions more than once (a long-lived server, the
    test suite running commands in-process) would otherwise, once a definition is freed and its
    address reused, get the machine of another file with the same name and version.
    """
    machine: Machine | None = workflow.__dict__.get("_machine")
    if machine is None:
        from transitions import Machine

        machine = Machine(
            model=None,
            states=list(workflow.states),
            transitions=[
                {"trigger": t.trigger, "source": t.source, "dest": t.dest}
                for t in workflow.transitions
            ],
            initial=workflow.initial.name,
            auto_transitions=False,
            send_event=True,
        )
        # A frozen dataclass: write the cache past its __setattr__, as cached_property does.
        workflow.__dict__["_machine"] = machine
    return machine


def moves_of(workflow: WorkflowDef) -> dict[tuple[str, str], str]:
    """(state, trigger) → destination, read once from the definition's ``transitions`` Machine.

    The Machine stays the engine that validates a definition (it is built here, so a definition
    it rejects fails on first use); an advance then needs one dict lookup instead of binding a
    model and firing an event through the library's callback machinery.
    """
    table: dict[tuple[str, str], str] | None = workflow.__dict__.get("_moves")
    if table is None:
        machine = machine_for(workflow)
        table = {}
        for trigger, event in machine.events.items():
            for source, candidates in event.transitions.items():
                if candidates:  # the first transition listed wins, as Machine would pick it
                    table.setdefault((source, trigger), candidates[0].dest or source)
        workflow.__dict__["_moves"] = table
    return table


def transition_of(workflow: WorkflowDef, trigger: str, state: str) -> TransitionDef | None:
    """The transition ``trigger`` fires from ``state`` (the first the file lists), or None.

    A dict built once per definition: ``WorkflowDef.transition`` scans every transition (and
    rebuilds the trigger list) on each call. None covers an unknown trigger too; the caller asks
    ``WorkflowDef.transition`` then, for its error.
    """
    table: dict[tuple[str, str], TransitionDef] | None = workflow.__dict__.get("_transitions")
    if table is None:
        table = {}
        for t in workflow.transitions:
            table.setdefault((t.trigger, t.source), t)
        workflow.__dict__["_transitions"] = table
    return table.get((trigger, state))


def move(workflow: WorkflowDef, state: str, trigger: str) -> str:
    """Fire ``trigger`` on a dossier in ``state``; return the state it lands in."""
    try:
        return moves_of(workflow)[(state, trigger)]
    except KeyError:
        raise TransitionRefused(f"'{trigger}' is not allowed from state {state}") from None


def fire(workflow: WorkflowDef, state: str, trigger: str) -> str:
    """The same move made through the ``transitions`` Machine itself (tests compare the two)."""
    from transitions import MachineError

    bound = _Bound(state)
    try:
        machine_for(workflow).events[trigger].trigger(bound)
    except (MachineError, KeyError):
        raise TransitionRefused(f"'{trigger}' is not allowed from state {state}") from None
    return bound.state
