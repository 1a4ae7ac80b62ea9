"""The facade's outputs as plain typed objects, each with the one definition of its JSON shape.

:class:`~ocop_workflow.service.Ocop` returns these; ``--json`` prints ``to_json()``, the tables are
printed from that same document, and the server returns it — so the CLI, the CLI through the
server and the API cannot drift apart. The shapes are those interface.md and the README promise
(keys may be added, never removed or renamed).

Nothing here touches the database: a shape is built from rows the reading functions
(views.py, audit.py, …) already fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .audit import VerifyReport
    from .checkpoint import Checkpoint


@dataclass(frozen=True)
class Verification:
    """``audit verify``: the hash chains recomputed (against the signed checkpoints given), and
    the dossiers that entered by import rather than ``register`` (an auditor's first question)."""

    report: VerifyReport
    imported: tuple[Mapping[str, Any], ...] = ()
    checkpoints: tuple[Checkpoint, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def dossiers_checked(self) -> int:
        return self.report.dossiers_checked

    @property
    def entries_checked(self) -> int:
        return self.report.entries_checked

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.document(),
            "imported": [dict(i) for i in self.imported],
            "checkpoints": [c.document() for c in self.checkpoints],
        }
