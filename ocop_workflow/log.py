"""structlog set-up, called once by the entry points (the CLI, the worker), never by the library.

Logs go to stderr so that stdout stays the command's output (one JSON document with ``--json``):
JSON lines when stderr is not a terminal (journald, files, collectors); on a terminal, readable
lines to the second, and only warnings unless asked (``--verbose``, ``[log] level``) — a person
wants the command's result on screen, not its log.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from functools import partial
from typing import IO, Any, Protocol

_configured: tuple[str, bool, IO[str] | None] | None = None
#: Bound loggers by name, built once per configuration (``configure`` empties it): building one
#: per event (``structlog.get_logger(...)`` then its first use) is a measurable part of an advance.
_loggers: dict[str, Any] = {}
#: The configured JSON-lines logger's (file writer, lowest level logged); None on a terminal.
_json_lines: tuple[_LineLogger, int] | None = None
#: The level of each logger method (``warn`` is structlog's alias of ``warning``).
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


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


def json_line(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """The JSON-lines chain as one processor: the line structlog's ``merge_contextvars``,
    ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``, ``format_exc_info`` and
    ``JSONRenderer(ensure_ascii=False)`` render one after the other (tests/test_log.py compares
    them), in fewer calls and with one JSON encoder: every advance logs an event."""
    merge, add_level, exc_info, encode = _parts or _load_parts()
    event_dict = add_level(logger, method_name, merge(logger, method_name, event_dict))
    event_dict["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if "exc_info" in event_dict:  # format_exc_info does nothing to an event without one
        event_dict = exc_info(logger, method_name, event_dict)
    return encode(event_dict)


#: structlog's processors ``json_line`` calls and ``JSONRenderer``'s ``json.dumps`` as one
#: encoder, loaded on first use (structlog is imported only when logging is configured).
_parts: tuple[Any, Any, Any, Callable[[Any], str]] | None = None


def _load_parts() -> tuple[Any, Any, Any, Callable[[Any], str]]:
    global _parts
    from structlog.contextvars import merge_contextvars
    from structlog.processors import add_log_level, format_exc_info

    encoder = json.JSONEncoder(ensure_ascii=False, default=_json_default)
    _parts = (merge_contextvars, add_log_level, format_exc_info, encoder.encode)
    return _parts


def _json_default(value: Any) -> Any:
    """A value JSON cannot hold, as ``JSONRenderer`` writes it: its ``__structlog__()``, else
    its ``repr`` (tests/test_log.py compares the bytes)."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


class EventLogger(Protocol):
    """What ``get_logger`` returns, on a terminal (structlog's bound logger) as on JSON lines
    (``_EventLogger``): the methods the code may call on it. ``%`` arguments after the event
    are interpolated as structlog does; ``exception`` is ``error`` with ``exc_info``."""

    def debug(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def info(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def warning(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def warn(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def error(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def critical(self, event: str, *args: Any, **kw: Any) -> Any: ...
    def exception(self, event: str, *args: Any, **kw: Any) -> Any: ...


class _EventLogger:
    """``get_logger``'s logger on JSON lines: what structlog's filtering bound logger does with
    an event (its keywords, then ``event``, through :func:`json_line`, one line to the file)
    without its layers of calls; the methods of levels below the configured one do nothing."""

    # set per instance in __init__ (an event's level method, or a no-op)
    debug: Callable[..., Any]
    info: Callable[..., Any]
    warning: Callable[..., Any]
    warn: Callable[..., Any]
    error: Callable[..., Any]
    critical: Callable[..., Any]

    def __init__(self, file: _LineLogger, min_level: int) -> None:
        self._file = file
        for name, level in _LEVELS.items():
            method = partial(self._emit, "warning" if name == "warn" else name)
            setattr(self, name, method if level >= min_level else _nop)

    def _emit(self, method_name: str, event: str, *args: Any, **kw: Any) -> None:
        if args:  # as structlog interpolates: one non-empty mapping by name, else by position
            one = len(args) == 1 and isinstance(args[0], Mapping) and args[0]
            event = event % (args[0] if one else args)
        kw["event"] = event
        self._file.msg(json_line(self._file, method_name, kw))

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self.error(event, *args, **kw)


def _nop(*_args: Any, **_kw: Any) -> None:
    return None


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
    global _configured, _json_lines
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
    processors: list[structlog.typing.Processor]
    if json_lines:
        processors = [json_line]
    else:
        processors = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=(file or sys.stderr).isatty()),
        ]
    min_level = logging.getLevelName(level)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=lambda *_args: logger,
        cache_logger_on_first_use=True,
    )
    _json_lines = (logger, min_level) if json_lines else None
    _configured = (level, json_lines, file)


def get_logger(name: str) -> EventLogger:
    """A logger for ``name`` under the current configuration (cached until ``configure``):
    on JSON lines an ``_EventLogger``, otherwise structlog's bound logger; both have the
    methods of ``EventLogger``, which mypy holds callers to."""
    found = _loggers.get(name)
    if found is None:
        if _json_lines is not None:
            found = _loggers[name] = _EventLogger(*_json_lines)
        else:
            import structlog

            found = _loggers[name] = structlog.get_logger(name).bind()
    return found
