"""Loggers are built once per configuration, yet a new configuration is obeyed at once."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

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


def _standard_chain_line(method: str, event: str, *args: object, **kw: object) -> str:
    """The line structlog's own processors render (the chain ``configure`` set up before
    ``log.json_line`` took their place)."""
    import structlog

    lines: list[str] = []

    class Collect:
        def msg(self, message: str) -> None:
            lines.append(message)

        info = warning = error = msg

    logger = structlog.wrap_logger(
        Collect(),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    getattr(logger, method)(event, *args, **kw)
    return lines[0]


def _without_timestamp(line: str) -> str:
    stamp = json.loads(line)["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp), stamp
    return line.replace(stamp, "…")


def test_an_event_is_written_as_the_line_structlogs_json_chain_renders(
    restore_logging: None,
) -> None:
    """Log collectors parse these lines: the one-call renderer of the engine's events (and of
    every structlog logger on JSON lines) writes them byte for byte as structlog's processors
    did — keys in the same order, context variables, levels, exceptions, odd values."""
    import structlog

    out = io.StringIO()
    log.configure("INFO", json_lines=True, file=out)
    events: list[tuple[str, dict[str, object]]] = [
        ("info", {"dossier": "OCOP-2026-0001", "to_state": "Hồ sơ đã nộp", "seq": 2}),
        ("warning", {"late_seconds": 1.5, "at": datetime(2026, 3, 2, tzinfo=UTC)}),
        ("warn", {"reason": 'quote " and \\ and \n'}),
    ]
    expected = []
    with structlog.contextvars.bound_contextvars(request="r-1", dossier="bound"):
        for method, kw in events:
            getattr(log.get_logger("ocop.engine"), method)("dossier.advanced", **kw)
            expected.append(_standard_chain_line(method, "dossier.advanced", **kw))
        log.get_logger("ocop.engine").info("moved %s to %s", "a", "b", seq=3)
        expected.append(_standard_chain_line("info", "moved %s to %s", "a", "b", seq=3))
        log.get_logger("ocop.engine").info("moved %(id)s", {"id": "a"})
        expected.append(_standard_chain_line("info", "moved %(id)s", {"id": "a"}))
        try:
            raise ValueError("sai")
        except ValueError:
            log.get_logger("ocop.engine").error("failed", exc_info=True)
            expected.append(_standard_chain_line("error", "failed", exc_info=True))
            log.get_logger("ocop.engine").exception("failed")
            expected.append(_standard_chain_line("exception", "failed"))
            structlog.get_logger("ocop.sweep").error("failed", exc_info=True)
            expected.append(_standard_chain_line("error", "failed", exc_info=True))

    written = out.getvalue().splitlines()
    assert [_without_timestamp(line) for line in written] == [
        _without_timestamp(line) for line in expected
    ]
    assert json.loads(written[0])["dossier"] == "OCOP-2026-0001"  # the event's own key wins
    assert "ValueError: sai" in json.loads(written[-1])["exception"]
    assert [json.loads(line)["event"] for line in written[3:5]] == ["moved a to b", "moved a"]
