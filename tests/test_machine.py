"""The move table an advance uses agrees with the ``transitions`` Machine, per definition."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import WORKFLOWS

from ocop_workflow.definitions import load_workflow_file
from ocop_workflow.errors import TransitionRefused
from ocop_workflow.machine import fire, move


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_move_of_the_table_is_the_one_the_transitions_machine_makes(path: Path) -> None:
    wf = load_workflow_file(path)
    for state in wf.states:
        for trigger in wf.triggers:
            try:
                expected = fire(wf, state, trigger)
            except TransitionRefused:
                with pytest.raises(TransitionRefused, match=f"'{trigger}' is not allowed"):
                    move(wf, state, trigger)
            else:
                assert move(wf, state, trigger) == expected
