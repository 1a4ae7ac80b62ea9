"""The lists of timers and of the outbox (``GET /timers``, ``GET /notifications``, ``ocop timers
list``, ``ocop notifications list``) are chosen by the database: the policy's read filter joined
on the dossier, in one statement, whoever asks and however many dossiers the province holds.

They used to read every row and then each row's dossier, one statement per dossier, to keep the
ones the reader may see: a producer who sees one dossier made the server read the province
(hostile review, finding 3). What a person is shown must not change: the rows of the dossiers
they may read, by the policy's own ``can_read``, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_server import NOW, Api, make_api

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")

COMMUNES = ("Ia Le", "Ia Phang")
PRODUCERS = ("HTX Cà phê Ia Le", "HTX Hồ tiêu Ia Le", "HTX Nông nghiệp Ia Phang")
#: States of the imported dossiers: one before the province council (whose members read it),
#: one in the commune's hands.
STATES = ("evaluation_province", "production")


@pytest.fixture
def api(tmp_path: Path, db_url: str, request: pytest.FixtureRequest) -> Api:
    made = make_api(tmp_path, db_url)
    request.addfinalizer(made.ocop.store.dispose)
    return made


def place(api: Api, first: int, count: int, producers: tuple[str, ...] = PRODUCERS) -> None:
    """``count`` dossiers ``B-…`` by a records import, spread over communes, ``producers`` and
    states, each with its timers."""
    rows = "".join(
        f"B-{i:05d},Sản phẩm {i},{producers[i % len(producers)]},{COMMUNES[i % 2]},"
        f"{STATES[i % 2]}\n"
        for i in range(first, first + count)
    )
    body = f"id,product,producer,commune,state\n{rows}".encode()
    imported = api.post("/api/v1/imports", "records", files={"file": ("b.csv", body)})
    assert imported.status_code == 200, imported.text


def world(api: Api, count: int = 12) -> None:
    """Dossiers of every kind with timers, a sweep later so that the outbox holds entries of
    each, and a checkpoint's outbox entry (its "dossier" is ``-``: no dossier at all)."""
    from ocop_workflow.clock import ManualClock
    from ocop_workflow.store import notification_t

    place(api, 0, count)
    api.register("htx_iale")
    api.ocop.at(ManualClock(NOW + timedelta(days=37))).sweep()
    with api.ocop.store.write() as conn:
        conn.execute(
            notification_t.insert(),
            [
                {
                    "key": "checkpoint-2026-04-08:auditor@example.vn",
                    "dossier_id": "-",
                    "kind": "audit_checkpoint",
                    "channel": "file",
                    "recipient": "auditor@example.vn",
                    "subject": "OCOP audit checkpoint",
                    "body": "{}",
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                }
            ],
        )


def readable(api: Api, user: Any, rows: list[Any]) -> list[Any]:
    """The rule the lists kept before, row by row: those of a dossier that exists and that
    the policy's ``can_read`` lets ``user`` read."""
    from ocop_workflow.errors import NotFound
    from ocop_workflow.views import get_dossier

    def sees(dossier: str) -> bool:
        try:
            return api.ocop.may_see(user, get_dossier(api.ocop.store, dossier))
        except NotFound:
            return False

    return [row for row in rows if sees(row.dossier)]


def lists(ocop: Any, user: Any) -> dict[str, list[Any]]:
    """The timers (all, pending, due) and the outbox (all, sent) ``user`` is shown."""
    return {
        "timers": ocop.timers(user, include_all=True),
        "pending": ocop.timers(user),
        "due": ocop.timers(user, due=True, include_all=True),
        "outbox": ocop.notifications(user),
        "sent": ocop.notifications(user, status="sent"),
    }


def test_each_person_sees_the_timers_and_outbox_entries_of_the_dossiers_they_may_read(
    api: Api,
) -> None:
    """Every user of the config, every filter: exactly the rows of the dossiers ``can_read``
    lets them read, in the order of the whole list; a page is a slice of it. Nobody in
    particular (the command line's holder of the database) sees every row, a checkpoint's
    outbox entry too; a person, even one who reads everything, only those of dossiers."""
    world(api)
    ocop = api.ocop
    everything = lists(ocop, None)
    assert len(everything["timers"]) > len(everything["pending"]) > 0
    assert len(everything["outbox"]) > len(everything["sent"]) > 0
    assert "-" in {n.dossier for n in everything["outbox"]}
    kinds = set()
    for key in sorted(ocop.config.users):
        user = ocop.user(key)
        shown = lists(ocop, user)
        for name, rows in shown.items():
            assert rows == readable(api, user, everything[name]), (key, name)
        assert ocop.timers(user, include_all=True, limit=3, offset=2) == shown["timers"][2:5]
        assert ocop.notifications(user, limit=2, offset=1) == shown["outbox"][1:3]
        kinds.add((bool(shown["timers"]), len(shown["timers"]) == len(everything["timers"])))
    # some see none of them, some a part, some all the dossiers' (the test means something)
    assert kinds == {(False, False), (True, False), (True, True)}


@contextmanager
def statements(api: Api) -> Iterator[list[str]]:
    """The statements the store's engine sends to the database inside the block."""
    import sqlalchemy as sa

    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = api.ocop.store.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def cost(api: Api, path: str, user: str) -> tuple[int, int]:
    """How many rows ``GET path`` shows ``user``, and how many statements it cost."""
    with statements(api) as sent:
        answer = api.get(path, user)
    assert answer.status_code == 200, answer.text
    return len(answer.json()), len(sent)


@pytest.mark.parametrize(
    "path", ["/api/v1/timers", "/api/v1/timers?all=true", "/api/v1/notifications"]
)
def test_a_producer_s_list_costs_the_same_statements_however_many_dossiers_others_have(
    api: Api, path: str
) -> None:
    """A producer's list, with 10 and then 40 more dossiers of other producers holding timers
    and outbox entries: the same rows, the same few statements (they cost one per dossier of
    the province before)."""
    from ocop_workflow.clock import ManualClock

    world(api, count=10)
    before = cost(api, path, "htx_iale")
    place(api, 10_000, 40, producers=PRODUCERS[1:])
    api.ocop.at(ManualClock(NOW + timedelta(days=37))).sweep()
    assert cost(api, path, "htx_iale") == before
    assert before[0] > 0 and before[1] <= 4


def test_the_api_gives_a_page_of_each_list_with_limit_and_offset(api: Api) -> None:
    """Without ``limit`` the whole list, as always (a JSON list); with it, one page of the
    same order, 1 to 1000 rows; the pages, put end to end, are the list."""
    world(api)
    for path in ("/api/v1/timers?all=true", "/api/v1/notifications?status=sent"):
        whole = api.get(path, "hung").json()
        assert isinstance(whole, list) and len(whole) > 5
        pages = [api.get(f"{path}&limit=4&offset={start}", "hung") for start in range(0, 60, 4)]
        assert [row for page in pages for row in page.json()] == whole
        for wrong in ("limit=0", "limit=1001", "offset=-1", f"offset={2**63}"):
            refused = api.get(f"{path}&{wrong}", "hung")
            assert refused.status_code == 422, (wrong, refused.text)
