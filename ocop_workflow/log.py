"""structlog set-up, called once by the entry points (the CLI, the worker), never by the library.

Logs go to stderr so that stdout stays the command's output (one JSON document with ``--json``):
JSON lines when stderr is not a terminal (journald, files, collectors); on a terminal, readable
lines to the second, and only warnings unless asked (``--verbose``, ``[log] level``) — a person
wants the command's result on screen, not its log.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

_configured: tuple[str, bool, IO[str] | None] | None = None
#: Bound loggers by name, built once per configuration (``configure`` empties it): building one
#: per event (``structlog.get_logger(...)`` then its first use) is a measurable part of an advance.
_loggers: dict[str, Any] = {}


class _LineLogger:
    """Writes each event as one line to ``file``, or else to the *current* ``sys.stderr``.

    A logger holding the stream it saw first would keep writing there after the stream is
    swapped (a test running the CLI in-process, an embedding application redirecting stderr).
    """

    __slots__ = ("file",)

    def __init__(self, file: IO[str] | None) -> None:
        self.file = file

    def msg(self, message: str) -> None:
        stream = self.file or sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = failure = fatal = msg


def configure(
    level: str | None = None,
    *,
    json_lines: bool | None = None,
    file: IO[str] | None = None,
    verbose: bool = False,
) -> None:
    """Set structlog up (events to ``file``, default stderr); the same settings again: no-op.

    ``level`` (``[log] level``) wins when given. Otherwise JSON lines carry every info event,
    while a terminal shows warnings only, unless ``verbose``.
    """
    global _configured
    if json_lines is None:
        json_lines = not (file or sys.stderr).isatty()
    if level is None:
        level = "INFO" if json_lines or verbose else "WARNING"
    level = level.upper()
    if _configured == (level, json_lines, file):
        return
    import structlog

    _loggers.clear()
    logger = _LineLogger(file)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=(file or sys.stderr).isatty())
    )
    stamper = (
        structlog.processors.TimeStamper(fmt="iso", utc=True)
        if json_lines
        else structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamper,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=lambda *_args: logger,
        cache_logger_on_first_use=True,
    )
    _configured = (level, json_lines, file)


def get_logger(name: str) -> Any:
    """The bound logger ``name`` under the current configuration (cached until ``configure``)."""
    found = _loggers.get(name)
    if found is None:
        import structlog

        found = _loggers[name] = structlog.get_logger(name).bind()
    return found
