"""``GET /audit/export`` and ``ocop audit export`` send the trail as they read it, a batch of
entries at a time: the server's memory does not grow with the trail (hostile review, finding 2:
a 1.5 GB export held 9 GB of the server's memory, built whole before the first byte went out),
and what is sent is byte for byte what it was.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_server import NOW, Api, make_api

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")


@pytest.fixture
def api(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Api:
    made = make_api(tmp_path, db_url)
    request.addfinalizer(made.ocop.store.dispose)
    return made


def grow(api: Api, dossier: str, count: int, *, size: int = 100, stored: bool = False) -> None:
    """``count`` more entries on ``dossier``'s chain, a day apart from ``NOW``, each carrying a
    note of ``size`` characters (``stored``: in the earlier format, with ``data_before``)."""
    from ocop_workflow.audit import entry_row
    from ocop_workflow.store import audit_t

    with api.ocop.store.write() as conn:
        head = conn.execute(
            audit_t.select().where(audit_t.c.dossier_id == dossier).order_by(audit_t.c.seq.desc())
        ).first()
        assert head is not None
        seq, prev, rows = head.seq, head.hash, []
        for n in range(seq + 1, seq + 1 + count):
            data = {"note": f"{n} ghi chú " + "x" * size, "ý": 'kiến, "trích" =1+1'}
            row = entry_row(
                dossier_id=dossier,
                seq=n,
                prev_hash=prev,
                trigger="note",
                from_state="registration",
                to_state="registration",
                actor="lan",
                reason=None if n % 3 else "=cmd|' /C calc'!A0",
                at=NOW + timedelta(days=n),
                data_after=data,
                data_before={"note": n - 1} if stored else None,
            )
            rows.append(row)
            prev = row["hash"]
        conn.execute(audit_t.insert(), rows)


def trail_of_three(api: Api) -> list[str]:
    """Three dossiers whose chains hold 1, 8 and 7 entries (one in the earlier format)."""
    made = [api.register("lan")["id"] for _ in range(3)]
    grow(api, made[1], 7)
    grow(api, made[2], 6, stored=True)
    return made


def exported(api: Api, fmt: str, since: str | None = None) -> str:
    query = {"format": fmt} | ({"since": since} if since else {})
    answer = api.get("/api/v1/audit/export", "auditor", params=query)
    assert answer.status_code == 200, answer.text
    return str(answer.text)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_export_is_the_same_bytes_whatever_the_batches_and_as_the_cli_writes_it(
    api: Api, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read one entry at a time, two, three or all at once, with and without ``since`` (whose
    first entry of each chain takes its before-state from an entry not exported): the same
    export, and the one ``ocop audit export`` writes."""
    from conftest import Workspace

    from ocop_workflow import audit

    trail_of_three(api)
    since = (NOW + timedelta(days=4)).isoformat()
    whole = {None: exported(api, fmt), since: exported(api, fmt, since)}
    assert whole[None].count("\n") == 16 + (fmt == "csv")
    assert 0 < whole[since].count("\n") < whole[None].count("\n")
    for batch in (1, 2, 3, 1000):
        monkeypatch.setattr(audit, "EXPORT_BATCH", batch)
        for after, wanted in whole.items():
            assert exported(api, fmt, after) == wanted, (batch, after)
    ws = Workspace(tmp_path, api.url)
    for after, wanted in whole.items():
        args = ["audit", "export", "--format", fmt] + (["--since", after] if after else [])
        assert ws.run(*args, check=True).stdout == wanted


def asgi_get(app: Any, path: str, query: str, token: str) -> tuple[int, list[int]]:
    """``GET path?query`` straight through the ASGI app, each chunk of the body dropped as it
    arrives (the test client would keep the whole answer, and it would be counted): the
    status and the length of each chunk."""
    status: list[int] = []
    chunks: list[int] = []
    asked: list[bool] = []

    async def run() -> None:
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not asked:  # the request (no body), then nothing until the answer is sent
                asked.append(True)
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.append(len(message["body"]))
                if not message.get("more_body"):
                    done.set()

        await app(scope, receive, send)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(run())
    return status[0], chunks


def peak_while(api: Api, fmt: str) -> tuple[int, int, int]:
    """The export sent through the app: the most memory Python held above what it held
    before, the bytes sent, and in how many chunks."""
    app, token = api.client.app, api.token("auditor")
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    status, chunks = asgi_get(app, "/api/v1/audit/export", f"format={fmt}", token)
    assert status == 200
    return tracemalloc.get_traced_memory()[1] - before, sum(chunks), len(chunks)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_server_sends_the_export_in_memory_that_does_not_grow_with_the_trail(
    api: Api, fmt: str
) -> None:
    """An export of 250 entries of 20 KB, then of 1,000: the server's peak memory is the
    same (a batch of entries; it grew with the export when the export was built whole before
    being sent, as one chunk), well under the export's size, and the body goes out in many
    chunks as it is read."""
    dossier = api.register("lan")["id"]
    grow(api, dossier, 249, size=20_000)
    tracemalloc.start()
    try:
        peak_while(api, fmt)  # the first request's one-off costs (imports, caches) aside
        small, small_bytes, _ = peak_while(api, fmt)
        grow(api, dossier, 750, size=20_000)
        large, large_bytes, chunks = peak_while(api, fmt)
    finally:
        tracemalloc.stop()
    assert large_bytes > 3.9 * small_bytes > 3.9 * 5_000_000
    assert large < 1.5 * small, (small, large)
    assert large < large_bytes / 2, (large, large_bytes)
    assert chunks > large_bytes / (2 << 16)


def test_a_first_read_that_fails_answers_its_error_not_a_cut_200(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch is read before the status goes out: the database failing there is the
    API's error answer (503), as when the export was built before it was sent."""
    from ocop_workflow import audit
    from ocop_workflow.errors import EnvironmentProblem

    api.register("lan")

    def unreachable(*_: Any) -> Any:
        raise EnvironmentProblem("database unreachable")

    monkeypatch.setattr(audit, "_batch", unreachable)
    answer = api.get("/api/v1/audit/export", "auditor")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "environment"
