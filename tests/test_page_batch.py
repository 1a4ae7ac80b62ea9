"""``PageBatches``: pages asked for while a batch is read are read together next, and each
request gets its own answer (the server's ``GET /dossiers/{id}`` on PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ocop_workflow.errors import EnvironmentProblem, UsageError
from ocop_workflow.page_batch import ALONE, PageBatches


class Reader:
    """A stand-in for ``PgReads.pages``: answers each pair with itself, records the batches,
    and holds the first batch until ``release`` so that the next requests queue behind it."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        self.release = threading.Event()
        self.fail = fail

    def __call__(self, asked: list[tuple[str, str]]) -> list[Any]:
        self.batches.append(asked)
        if len(self.batches) == 1:
            self.release.wait(5)
        if self.fail is not None and len(asked) > 1:
            raise self.fail
        if any("\0" in dossier for _, dossier in asked):
            raise UsageError("the database refused a value: NUL")
        return [f"{digest}:{dossier}" for digest, dossier in asked]


def run(reader: Reader, asked: list[str]) -> list[Any]:
    async def scenario() -> list[Any]:
        batches = PageBatches(reader)
        try:
            tasks = [asyncio.create_task(batches.fetch("t", d)) for d in asked]
            await asyncio.sleep(0.05)  # all asked while the first batch is being read
            reader.release.set()
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            batches.close()

    return asyncio.run(scenario())


def test_pages_asked_while_a_batch_is_read_are_read_together_each_answered_its_own() -> None:
    reader = Reader()
    answers = run(reader, ["A", "B", "C", "D"])
    assert answers == ["t:A", "t:B", "t:C", "t:D"]
    assert reader.batches == [[("t", "A")], [("t", "B"), ("t", "C"), ("t", "D")]]


def test_a_value_the_database_refuses_sends_each_request_of_its_batch_to_be_read_alone() -> None:
    """One request's NUL must not fail the others' pages: they are read on their own, and
    only a batch of one gets the refusal itself."""
    reader = Reader()
    answers = run(reader, ["A", "B", "C\0", "D"])
    assert answers[0] == "t:A"
    assert answers[1:] == [ALONE, ALONE, ALONE]
    solo = Reader()
    solo.release.set()
    (refused,) = run(solo, ["C\0"])
    assert isinstance(refused, UsageError)


def test_a_database_that_fails_fails_every_request_of_the_batch() -> None:
    reader = Reader(fail=EnvironmentProblem("database unreachable"))
    answers = run(reader, ["A", "B", "C"])
    assert answers[0] == "t:A"
    assert all(isinstance(a, EnvironmentProblem) for a in answers[1:]), answers


def test_a_request_cancelled_while_its_batch_is_read_leaves_the_others_answered() -> None:
    reader = Reader()

    async def scenario() -> list[Any]:
        batches = PageBatches(reader)
        try:
            tasks = [asyncio.create_task(batches.fetch("t", d)) for d in "ABC"]
            await asyncio.sleep(0.05)
            tasks[1].cancel()
            reader.release.set()
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            batches.close()

    answers = asyncio.run(scenario())
    assert answers[0] == "t:A" and answers[2] == "t:C"
    assert isinstance(answers[1], asyncio.CancelledError)


@pytest.mark.parametrize("n", [1, 5])
def test_the_batch_thread_ends_with_close(n: int) -> None:
    reader = Reader()
    reader.release.set()
    before = threading.active_count()
    assert run(reader, [str(i) for i in range(n)]) == [f"t:{i}" for i in range(n)]
    assert threading.active_count() == before


def test_however_many_pages_are_asked_at_once_a_batch_reads_at_most_most_in_order() -> None:
    """A flood of requests must not become one unbounded statement: the pages queued behind
    the first batch are read ``MOST`` at a time, oldest first, each answered its own."""
    from ocop_workflow.page_batch import MOST

    reader = Reader()
    asked = [f"D{i}" for i in range(2 * MOST + 11)]
    answers = run(reader, asked)
    assert answers == [f"t:{d}" for d in asked]
    assert [len(b) for b in reader.batches] == [1, MOST, MOST, 10]
    assert [d for batch in reader.batches for _, d in batch] == asked
