"""structlog set-up, called once by the entry points (the CLI, the worker), never by the library.

Logs go to stderr so that stdout stays the command's output (one JSON document with ``--json``):
human-readable lines on a terminal, JSON lines otherwise (for journald, files, collectors).
"""

from __future__ import annotations

import logging
import sys

_configured = False


def configure(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    global _configured
    if _configured:
        return
    import structlog

    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True
