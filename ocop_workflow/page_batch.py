"""Dossier pages read together: the server's ``GET /dossiers/{id}`` on PostgreSQL.

Each page (the request's token row, the dossier, its pending timers and first audit entry) is
one statement (``PgReads.page_ahead``), but one statement per request still cost the server a
hand-over to a pool thread and back, psycopg's work for a statement, and the threads' fight
for the interpreter lock while they wait for the network: about twice the CPU of the same
page on a SQLite file, read right on the event loop. Here the pages asked for while one batch
is being read are read next, all in one statement (``PgReads.pages``: one round trip, one
snapshot) on one thread of their own; the page itself is then built on the event loop from the
answers (``PgReads.answered``), with no database call. A single client waits for one round
trip as before; sixteen at once share a few.

A batch that PostgreSQL refuses for a value (a NUL in a dossier id: ``UsageError``) would be
one request's fault: each of its requests is then read alone (``ALONE``), so that only that
one is told. Any other failure (the database unreachable) is every request's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .errors import UsageError

#: A batch's answer to a request that must be read on its own (see the module's docstring).
ALONE = object()
#: Pages read in one batch at most: however many requests arrive at once, one statement stays
#: of a bounded size, and one request's refused value sends at most this many to be read alone.
MOST = 64

Reader = Callable[[list[tuple[str, str]]], list[Any]]


class PageBatches:
    """Pages asked for on one event loop, read in batches by ``read`` on one thread."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._asked: list[tuple[str, str, asyncio.Future[Any]]] = []
        self._reading = False
        self._executor: ThreadPoolExecutor | None = None

    async def fetch(self, digest: str, dossier_id: str) -> Any:
        """The page's row for the token ``digest`` and the dossier ``dossier_id``, or
        ``ALONE``."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._asked.append((digest, dossier_id, answer))
        if not self._reading:
            self._next(loop)
        return await answer

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the pages asked for so far, ``MOST`` at most, oldest first, on the batch
        thread."""
        batch, self._asked = self._asked[:MOST], self._asked[MOST:]
        self._reading = True
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="ocop-pages")
        pairs = [(digest, dossier) for digest, dossier, _ in batch]
        done = self._executor.submit(self._read, pairs)
        done.add_done_callback(
            lambda read: loop.call_soon_threadsafe(self._answer, loop, batch, read)
        )

    def _answer(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[str, str, asyncio.Future[Any]]],
        read: Future[list[Any]],
    ) -> None:
        """On the event loop: each request its row (or the batch's error); then the next batch."""
        self._reading = False
        failure = read.exception()
        rows = read.result() if failure is None else [None] * len(batch)
        for (_, _, answer), row in zip(batch, rows, strict=True):
            if answer.done():  # the request was cancelled meanwhile
                continue
            if failure is None:
                answer.set_result(row)
            elif isinstance(failure, UsageError) and len(batch) > 1:
                answer.set_result(ALONE)
            else:
                answer.set_exception(failure)
        if self._asked:
            self._next(loop)

    def close(self) -> None:
        """End the batch thread (the server stops)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
