"""A server process on a SQLite file runs its write requests on its event loop when the write
lock is free, else on one writer thread, in turn.

SQLite lets one writer in at a time. When the thread pool took write requests five at a time,
the threads spent their time waiting for the write lock and taking the interpreter lock from
each other and from the event loop (13-25 context switches per advance under bench/api.py);
now one thread writes, the next write as soon as the last one ends, while the event loop goes
on reading and answering.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from pathlib import Path

import httpx
import pytest
from conftest import Workspace, serving

from ocop_workflow.server import Writer

CLIENTS = 12
EACH = 4


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_a_sqlite_server_writes_on_its_loop_or_one_writer_thread_however_many_write_at_once(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    token = ws.run("token", "create", "--user", "lan", check=True).stdout.strip()
    body = {"product": "Cà phê bột", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"}
    start = threading.Barrier(CLIENTS)
    moved: list[dict[str, object]] = []
    errors: list[str] = []

    with serving(ws) as server:
        pid = server.process.pid
        at_rest = threads_of(pid)

        def client() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
                start.wait(timeout=60)
                for _ in range(EACH):
                    made = http.post("/api/v1/dossiers", json=body)
                    if made.status_code != 201:
                        errors.append(made.text)
                        continue
                    answer = http.post(
                        f"/api/v1/dossiers/{made.json()['id']}/advance",
                        json={"trigger": "accept_idea", "expect_version": 1},
                    )
                    if answer.status_code == 200:
                        moved.append(answer.json())
                    else:
                        errors.append(answer.text)

        clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        during = threads_of(pid)

    assert errors == []
    assert len(moved) == CLIENTS * EACH
    assert {m["version"] for m in moved} == {2}
    # the event loop's thread (writes that find the lock free run there), and at most the one
    # writer thread (started by the first write that had to wait for the lock): no pool threads
    assert at_rest == 1 and during <= 2, (at_rest, during)


def test_the_writer_runs_work_in_order_on_one_thread_with_the_callers_context() -> None:
    """Results and errors come back to each caller; context variables travel with the work (as
    the thread pool carries them); ``close`` waits for what is queued and ends the thread."""
    request = contextvars.ContextVar("request", default="none")
    ran: list[tuple[int, int, str]] = []

    def work(n: int) -> int:
        ran.append((n, threading.get_ident(), request.get()))
        if n == 3:
            raise ValueError("three")
        return n * n

    async def caller(writer: Writer, n: int) -> int | str:
        request.set(f"request {n}")
        try:
            return await writer.run(lambda: work(n))
        except ValueError as exc:
            return str(exc)

    async def main() -> list[int | str]:
        writer = Writer()
        try:
            return list(await asyncio.gather(*(caller(writer, n) for n in range(8))))
        finally:
            writer.close()

    before = threading.active_count()
    answers = asyncio.run(main())
    assert answers == [0, 1, 4, "three", 16, 25, 36, 49]
    assert [n for n, _, _ in ran] == list(range(8))
    assert len({thread for _, thread, _ in ran}) == 1
    assert threading.get_ident() not in {thread for _, thread, _ in ran}
    assert [context for _, _, context in ran] == [f"request {n}" for n in range(8)]
    assert threading.active_count() == before


def test_the_loops_writes_leave_their_checkpoint_to_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes run on the event loop do not copy the WAL back on commit (every request would
    wait meanwhile): every ``AT_ONCE_CHECKPOINT_EVERY`` of them, the writer thread does."""
    from test_server_busy import _app_on_a_file

    from ocop_workflow import store as store_module
    from ocop_workflow.store import Store

    monkeypatch.setattr(store_module, "AT_ONCE_CHECKPOINT_EVERY", 2)
    ran: list[str] = []
    checkpoint = Store.checkpoint

    def recorded(self: Store) -> None:
        ran.append(threading.current_thread().name)
        checkpoint(self)

    monkeypatch.setattr(Store, "checkpoint", recorded)
    app, _dossier, token, _db = _app_on_a_file(tmp_path)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"product": "Cà phê bột", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"}

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ocop") as client:
            codes = []
            for _ in range(5):
                made = await client.post("/api/v1/dossiers", json=body, headers=headers)
                codes.append(made.status_code)
            return codes

    async def main() -> list[int]:
        async with app.router.lifespan_context(app):  # the writer thread ends with the app
            return await scenario()

    assert asyncio.run(main()) == [201] * 5
    # five commits on the loop: two checkpoints due, both run on the writer thread
    assert len(ran) == 2 and all(name.startswith("ocop-writer") for name in ran), ran


def test_a_checkpoint_that_cannot_be_handed_over_does_not_fail_the_committed_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Writer.submit`` runs after the request's write committed: a thread that cannot be
    started (the process's thread limit) is logged, not raised — the client would otherwise be
    told that a registration failed which is in the database, and register it again."""
    writer = Writer()

    def no_thread() -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(writer, "_start", no_thread)
    writer.submit(lambda: None)  # no exception
    ran: list[str] = []
    working = Writer()
    working.submit(lambda: ran.append(threading.current_thread().name))
    working.submit(lambda: 1 / 0)  # a failure of the work itself: logged as well
    working.close()
    assert len(ran) == 1 and ran[0].startswith("ocop-writer")
