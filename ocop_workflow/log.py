"""structlog set-up, called once by the entry points (the CLI, the worker), never by the library.

Logs go to stderr so that stdout stays the command's output (one JSON document with ``--json``):
human-readable lines on a terminal, JSON lines otherwise (for journald, files, collectors).
"""

from __future__ import annotations

import logging
import sys

_configured: tuple[str, bool] | None = None


class _StderrLogger:
    """Writes each event to the *current* ``sys.stderr``, looked up per line.

    A logger holding the stream it saw first would keep writing there after the stream is
    swapped (a test running the CLI in-process, an embedding application redirecting stderr).
    """

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = failure = fatal = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def configure(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Set structlog up; calling it again with the same settings does nothing."""
    global _configured
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    if _configured == (level, json_lines):
        return
    import structlog

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
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    _configured = (level, json_lines)
