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

    from .definitions import WorkflowDef

_MACHINES: dict[tuple[str, str, int], Machine] = {}


class _Bound:
    """The dossier as the machine sees it for one move: nothing but its state."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


def machine_for(workflow: WorkflowDef) -> Machine:
    """The machine of ``workflow``, built on first use and kept for the process's lifetime."""
    key = (workflow.name, workflow.version, id(workflow))
    machine = _MACHINES.get(key)
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
        _MACHINES[key] = machine
    return machine


def move(workflow: WorkflowDef, state: str, trigger: str) -> str:
    """Fire ``trigger`` on a dossier in ``state``; return the state it lands in."""
    from transitions import MachineError

    bound = _Bound(state)
    try:
        machine_for(workflow).events[trigger].trigger(bound)
    except (MachineError, KeyError):
        raise TransitionRefused(f"'{trigger}' is not allowed from state {state}") from None
    return bound.state
