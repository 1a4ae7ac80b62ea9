"""The one clock module: what "now" is, decided at the edges and handed to everything below.

Three clocks exist. :class:`SystemClock` is the wall clock. :class:`FixedClock` is one instant
(a CLI command: every row it writes carries the same "now"). :class:`RehearsalClock` starts at an
instant from the past or future and moves on at real speed (a worker or a server rehearsing a
year). Only :func:`clock_from_env` reads ``OCOP_NOW`` and only the edges (CLI, worker, server)
call it; the facade, the engine and the sweep receive a clock and never look at the environment
or the wall clock themselves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import Config

#: The environment variable that sets a rehearsal's "now" (only with ``[clock] allow_override``).
NOW_ENV = "OCOP_NOW"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class FixedClock:
    """One instant, always (a command, a test, a rehearsal step)."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant


@dataclass
class ManualClock:
    """An instant its owner moves (the demo steps through a year of the story; the worker sets
    each sweep's own)."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant


@dataclass
class RehearsalClock:
    """``start`` moving on at real speed: a long-running process rehearsing another date."""

    start: datetime
    _origin: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._origin)


def override_instant(config: Config, text: str | None, what: str = NOW_ENV) -> datetime | None:
    """The instant an override names, or None without one; refused unless the config allows.

    The override is refused unless ``[clock] allow_override = true`` so that a production audit
    trail cannot be back-dated by an environment variable or a request header.
    """
    from .errors import ConfigError

    if not text:
        return None
    if not config.allow_clock_override:
        raise ConfigError(
            f"{what} is set but [clock] allow_override is false in "
            f"{config.path}: unset {what} or allow the override (rehearsals only)"
        )
    return parse_instant(text, what, ConfigError)


def clock_from_env(
    config: Config, env: Mapping[str, str] | None = None, *, moving: bool = False
) -> Clock:
    """The clock an edge hands down: the system clock, or the rehearsal ``OCOP_NOW`` names.

    ``moving`` is for long-running processes (worker, server): their rehearsal "now" moves on
    from ``OCOP_NOW`` at real speed. A one-shot command keeps one instant for all it writes.
    """
    env = os.environ if env is None else env
    start = override_instant(config, env.get(NOW_ENV))
    if start is None:
        return SystemClock() if moving else FixedClock(datetime.now(UTC))
    return RehearsalClock(start) if moving else FixedClock(start)


def parse_instant(text: str, what: str, error: type[Exception]) -> datetime:
    """ISO 8601 with an explicit offset → aware UTC datetime."""
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise error(
            f"{what}: '{text}' is not an ISO 8601 instant (e.g. 2026-02-13T09:00+07:00)"
        ) from None
    if value.tzinfo is None:
        raise error(f"{what}: '{text}' needs a UTC offset (e.g. +07:00)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+07:00 has no UTC instant
        raise error(f"{what}: '{text}' is out of range") from None
