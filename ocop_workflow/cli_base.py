"""What every ``ocop`` command module shares: the invocation's ``App``, ``--json`` and its
output, the log. Apart from ``cli`` so that the command groups in modules of their own
(``cli_calendar``) need not import ``cli``, which imports them to register them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from .app import App

F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(func)


def emit_json(document: Any) -> None:
    """One JSON document on stdout — real JSON: a non-finite number (which input checks refuse,
    but an old row may hold) is printed as null, never as ``NaN``/``Infinity``."""
    try:
        text = json.dumps(document, ensure_ascii=False, indent=2, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(document), ensure_ascii=False, indent=2, default=str)
    click.echo(text)


def _finite(value: Any) -> Any:
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def app_of(ctx: click.Context) -> App:
    from click.core import ParameterSource

    from .app import App

    root = ctx.find_root()
    obj = root.obj
    assert isinstance(obj, App)
    if (
        obj.acting_user is not None
        and not obj.through_server()
        and (root.get_parameter_source("acting_user") == ParameterSource.COMMANDLINE)
    ):
        # A misspelt --as typed on the command line is a mistake even on a reading command
        # (exit 3; 'system' exit 6). OCOP_USER is only checked where an actor is needed: a stale
        # value in a cron job's environment must not stop `ocop sweep` or `ocop init`.
        obj.config.user(obj.acting_user)
    return obj


def writing(app: App, *, service: bool = False) -> None:
    """Commands that change the database log their events (after commit) through structlog.

    A person at a terminal sees the command's result, not its log: there, info events show only
    with ``--verbose`` or ``[log] level``. Anything else (a pipe, a file, journald) gets every
    event as a JSON line. ``service``: the worker logs as a service does, wherever it runs.
    """
    from . import log

    log.configure(app.config.log_level, verbose=app.verbose or service)
