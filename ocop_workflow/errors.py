"""One error hierarchy: every failure a user can cause carries its exit code.

The CLI maps an :class:`OcopError` to ``error: <message>`` on stderr and the exit code of
interface.md; anything else is a bug and exits 1. Library callers catch :class:`OcopError`.

Messages are worded for every caller (a person at the command line, an API client, a web app):
they name a value as the facade takes it ("'reject' needs a reason", "data field 'stars'"),
never as one edge spells it (``--reason``, ``--set stars=…``). Which inputs are at fault is in
``fields``, in the facade's terms (``reason``, ``commune``, ``council``, ``data.certificate_no``):
the CLI turns them into its options, the server returns them as they are.
"""

from __future__ import annotations


class OcopError(Exception):
    """Base of every expected failure. ``exit_code`` and ``code`` are part of the interface."""

    exit_code: int = 1
    code: str = "error"

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        #: The caller's inputs that would fix it, named as the facade takes them (``reason``,
        #: ``data.<field>``): each edge says how its callers give them.
        self.fields = fields


class ConfigError(OcopError):
    """Bad config.toml, unknown key, wrong type, refused clock override."""

    exit_code = 1
    code = "config"


class WorkflowFileError(OcopError):
    """A workflow definition file is malformed or inconsistent."""

    exit_code = 1
    code = "workflow"

    def __init__(
        self, message: str, problems: list[str] | None = None, *, fields: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, fields=fields)
        self.problems = problems or [message]


class EnvironmentProblem(OcopError):
    """The database is unreachable or not initialised, or another process holds a lease."""

    exit_code = 1
    code = "environment"


class MissingTool(EnvironmentProblem):
    """A program a request needs (Graphviz) is missing or failed. Unlike the database's
    problems, which a server tells its clients only as "see the log" (they name the database),
    its message holds no secret and says what to do instead."""


class UsageError(OcopError):
    """A malformed value the edge's parser could not catch (a bad data field, a bad date)."""

    exit_code = 2
    code = "usage"


class PayloadTooLarge(UsageError):
    """An upload larger than ``[documents] max_bytes``; nothing was stored."""

    code = "too_large"


class NotFound(OcopError):
    """Unknown dossier, workflow, user or trigger."""

    exit_code = 3
    code = "not_found"


class TransitionRefused(OcopError):
    """The trigger is not allowed from the current state, or a guard failed."""

    exit_code = 4
    code = "refused"

    def __init__(
        self, message: str, reasons: list[str] | None = None, *, fields: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, fields=fields)
        self.reasons = reasons or [message]


class Conflict(OcopError):
    """The dossier changed since the version the caller saw; nothing was written."""

    exit_code = 5
    code = "conflict"


class PermissionDenied(OcopError):
    """The acting user lacks the role or the commune scope."""

    exit_code = 6
    code = "permission_denied"


class Unauthenticated(PermissionDenied):
    """No valid login: a missing, unknown, expired or revoked token, or a wrong password."""

    code = "unauthenticated"


class AuditFailure(OcopError):
    """Audit verification found a problem."""

    exit_code = 7
    code = "audit_failed"
