"""The SQLite worker lease: one row naming the one worker that may sweep a SQLite database.

SQLite serialises writers, so two workers would only take turns failing each other's batches;
a second one is refused with a clear message while the first one's lease is live. The holder
renews it every sweep and it expires if the holder dies. PostgreSQL needs none: its sweeps
claim with ``SKIP LOCKED`` side by side. The facade hands it out (``Ocop.worker_lease``): the
worker itself holds no store.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from .errors import EnvironmentProblem
from .store import Store, insert_ignore, lease_t

LEASE_NAME = "sqlite-worker"


class Lease:
    """The SQLite worker lease: one holder, renewed each sweep, expiring if the holder dies."""

    def __init__(self, store: Store, holder: str, ttl: timedelta) -> None:
        self.store = store
        self.holder = holder
        self.ttl = ttl

    def acquire(self, now: datetime) -> None:
        with self.store.write() as conn:
            insert_ignore(
                conn,
                lease_t,
                {"name": LEASE_NAME, "holder": self.holder, "expires_at": now + self.ttl},
                ["name"],
            )
            taken = conn.execute(
                lease_t.update()
                .where(
                    lease_t.c.name == LEASE_NAME,
                    sa.or_(lease_t.c.holder == self.holder, lease_t.c.expires_at <= now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl)
            ).rowcount
            if not taken:
                row = conn.execute(sa.select(lease_t).where(lease_t.c.name == LEASE_NAME)).one()
                raise EnvironmentProblem(
                    f"another worker ({row.holder}) is sweeping this SQLite database until "
                    f"{row.expires_at.isoformat()}: on SQLite only one worker may run "
                    "(use PostgreSQL for several)"
                )

    def release(self) -> None:
        with self.store.write() as conn:
            conn.execute(
                lease_t.delete().where(
                    lease_t.c.name == LEASE_NAME, lease_t.c.holder == self.holder
                )
            )
