"""The value checks of config.toml keys: each takes a key's full name and its value, and returns
the value or raises :class:`~ocop_workflow.errors.ConfigError` (exit 1) naming the key.

Shared by config.py and by the notification channels, whose ``config_keys`` say how the keys of
their own ``[notifications.<name>]`` table are checked (channels.py), without importing config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

#: A value check: the key's full name (for the error) and the value in, the value out.
Check = Callable[[str, Any], Any]


def typed(kind: type | tuple[type, ...], label: str) -> Check:
    """A check that the value is a ``kind`` (``true`` is not an integer)."""

    def check(name: str, value: Any) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"config key '{name}' must be {label}, not {value!r}")
        if not isinstance(value, kind):
            raise ConfigError(f"config key '{name}' must be {label}, not {value!r}")
        return value

    return check


text = typed(str, "a string")
flag = typed(bool, "true or false")
integer = typed(int, "an integer")
_any_number = typed((int, float), "a number")


def number(name: str, value: Any) -> Any:
    """A number, and a finite one: ``nan`` compares false with everything, so it would pass
    every range check and then stop the worker (``inf`` seconds between sweeps)."""
    value = _any_number(name, value)
    if not math.isfinite(value):
        raise ConfigError(f"config key '{name}' must be a finite number, not {value!r}")
    return value


def str_list(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{name}' must be a list of strings, not {value!r}")
    return tuple(value)


def positive(check: Check) -> Check:
    """``check``, and above zero."""

    def inner(name: str, value: Any) -> Any:
        value = check(name, value)
        if value <= 0:
            raise ConfigError(f"config key '{name}' must be positive, not {value!r}")
        return value

    return inner


def networks(name: str, value: Any) -> tuple[str, ...]:
    """A list of IP addresses and networks (``10.0.0.0/8``, ``::1``), each written canonically.

    A network with host bits set (``10.0.0.1/8``) is refused rather than widened: whoever wrote
    it meant one of two things, and trusting the wider one by guess could trust attackers.
    """
    import ipaddress

    out = []
    for entry in str_list(name, value):
        try:
            out.append(str(ipaddress.ip_network(entry.strip(), strict=True)))
        except ValueError as exc:
            raise ConfigError(
                f"config key '{name}': {entry!r} is not an IP address or network ({exc})"
            ) from None
    return tuple(out)
