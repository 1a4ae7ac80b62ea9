"""Loggers are built once per configuration, yet a new configuration is obeyed at once."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from ocop_workflow import log


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    log.configure(json_lines=True, file=io.StringIO())


def test_an_engine_event_after_reconfiguring_goes_to_the_new_destination(
    restore_logging: None,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    log.configure(json_lines=True, file=first)
    log.get_logger("ocop.engine").info("dossier.advanced", dossier="OCOP-2026-0001")
    log.configure(json_lines=True, file=second)
    log.get_logger("ocop.engine").info("dossier.advanced", dossier="OCOP-2026-0002")

    assert [json.loads(line)["dossier"] for line in first.getvalue().splitlines()] == [
        "OCOP-2026-0001"
    ]
    assert [json.loads(line)["dossier"] for line in second.getvalue().splitlines()] == [
        "OCOP-2026-0002"
    ]


def test_a_level_raised_by_reconfiguring_drops_info_events(restore_logging: None) -> None:
    out = io.StringIO()
    log.configure("INFO", json_lines=True, file=out)
    log.get_logger("ocop.engine").info("first")
    log.configure("WARNING", json_lines=True, file=out)
    log.get_logger("ocop.engine").info("dropped")
    log.get_logger("ocop.engine").warning("kept")

    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "first",
        "kept",
    ]
