"""The HTTP API against the real app (FastAPI's TestClient over httpx) on SQLite and PostgreSQL.

Each test builds the facade on a fresh database, makes real tokens, and talks HTTP to the app:
who acts is the token's owner, errors carry the CLI's codes with HTTP statuses, uploads are
limited, logins are throttled in the database.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_database, import_before_council, write_config

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 09:00 in Hà Nội


@dataclass
class Api:
    """An app on a fresh database, a client, and tokens by user key."""

    client: Any
    ocop: Any
    url: str
    tokens: dict[str, str]

    def h(self, user: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}", **extra}

    def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = self.ocop.create_token(user).token
        return self.tokens[user]

    def get(self, path: str, user: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self.h(user) if user else {}, **kw)

    def post(self, path: str, user: str | None = None, **kw: Any) -> Any:
        return self.client.post(path, headers=self.h(user) if user else {}, **kw)

    def upload(self, dossier_id: str, user: str, kind: str, name: str, content: bytes) -> Any:
        """``POST /dossiers/{id}/documents``: one file as a multipart upload."""
        return self.post(
            f"/api/v1/dossiers/{dossier_id}/documents",
            user,
            data={"kind": kind},
            files={"file": (name, content, "application/pdf")},
        )

    def register(self, user: str = "lan", **fields: Any) -> dict[str, Any]:
        body = {"product": "Cà phê bột", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"}
        body.update(fields)
        response = self.post("/api/v1/dossiers", user, json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def make_api(root: Path, url: str, *, extra: str = "", allow_override: bool = True) -> Api:
    from fastapi.testclient import TestClient

    from ocop_workflow.clock import ManualClock
    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    root.mkdir(parents=True, exist_ok=True)
    write_config(root, extra=extra, allow_override=allow_override)
    config = load_config(root / "config.toml", {"OCOP_DATABASE_URL": url})
    ocop = Ocop(config, ManualClock(NOW))  # the server's own clock: tests move it
    upgrade(ocop.store)
    return Api(TestClient(create_app(ocop)), ocop, url, {})


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[Api]:
    made = make_api(tmp_path, db_url)
    try:
        yield made
    finally:
        made.ocop.store.dispose()


def test_register_and_advance_act_as_the_token_owner_whatever_the_body_says(api: Api) -> None:
    body = {"product": "Cà phê bột", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"}
    named = api.post("/api/v1/dossiers", "lan", json={**body, "actor": "hung"})
    assert named.status_code == 422, named.text  # an unknown field: refused, never obeyed
    dossier = api.register(user="lan")
    refused = api.post(
        f"/api/v1/dossiers/{dossier['id']}/advance",
        "lan",
        json={"trigger": "accept_idea", "expect_version": 1, "actor": "hung"},
    )
    assert refused.status_code == 422, refused.text
    moved = api.post(
        f"/api/v1/dossiers/{dossier['id']}/advance",
        "lan",
        json={"trigger": "accept_idea", "expect_version": 1},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["actor"] == "lan"
    assert moved.json()["to"] == "business_plan"
    history = api.get(f"/api/v1/dossiers/{dossier['id']}/history", "lan").json()
    assert [e["actor"] for e in history] == ["lan", "lan"]


def test_a_stale_expect_version_is_409_and_writes_nothing(api: Api) -> None:
    dossier = api.register()
    before = dump_database(api.url)
    response = api.post(
        f"/api/v1/dossiers/{dossier['id']}/advance",
        "lan",
        json={"trigger": "accept_idea", "expect_version": 7},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert dump_database(api.url) == before


def test_errors_map_to_http_statuses_with_the_cli_error_body(api: Api) -> None:
    dossier = api.register()
    path = f"/api/v1/dossiers/{dossier['id']}"
    cases = [
        (api.get("/api/v1/dossiers/OCOP-1999-9999", "lan"), 404, "not_found"),
        (api.post(f"{path}/advance", "lan", json={"trigger": "certify"}), 409, "refused"),
        (api.post(f"{path}/advance", "lan", json={"trigger": "reject"}), 409, "refused"),
        (
            api.post(f"{path}/advance", "lan", json={"trigger": "accept_idea", "data": {"x": 1}}),
            422,
            "usage",
        ),
        (api.post(f"{path}/advance", "lan", json={"expect_version": 1}), 422, "usage"),
        (api.post(f"{path}/advance", "hung", json={"trigger": "accept_idea"}), 403, None),
        (api.post(f"{path}/advance", "council", json={"trigger": "accept_idea"}), 404, None),
        (api.get("/api/v1/dossiers?limit=0", "lan"), 422, "usage"),
        (api.get("/api/v1/dossiers?state=bussiness_plan", "lan"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"}
        if code is not None:
            assert body["error"]["code"] == code
        assert body["error"]["message"]


def test_a_refused_import_answers_the_status_of_its_refusal_with_the_row_by_row_report(
    api: Api,
) -> None:
    """``POST /imports`` refuses a whole file for its worst row: ids taken meanwhile are 409
    ``conflict`` and a row its sender may not register 403 ``permission_denied``, as the same
    refusal of one ``POST /dossiers`` is; bad rows are 422 ``usage``. Beside the error, the
    ``report`` names each problem by line, and nothing was registered."""

    def sent(user: str, sheet: str) -> Any:
        files = {"file": ("ho-so.csv", sheet.encode(), "text/csv")}
        return api.post("/api/v1/imports", user, files=files)

    taken = api.register()["id"]
    before = api.get("/api/v1/dossiers", "hung").json()["total"]
    cases = [
        ("lan", f"id,product,producer,commune\n{taken},Mật ong,HTX Cà phê Ia Le,Ia Le\n",
         409, "conflict"),
        ("htx_iale", "product,producer,commune\nTrà,HTX Nông nghiệp Ia Phang,Ia Phang\n",
         403, "permission_denied"),
        ("lan", "product,producer,commune\n,HTX Cà phê Ia Le,Ia Le\n", 422, "usage"),
    ]  # fmt: skip
    for user, sheet, status, code in cases:
        refused = sent(user, sheet)
        assert refused.status_code == status, refused.text
        body = refused.json()
        assert set(body) == {"error", "report"}
        assert body["error"]["code"] == code
        assert body["report"]["imported"] == 0
        problems = body["report"]["problems"]
        assert problems and problems[0].startswith("ho-so.csv:2: ")
    assert api.get("/api/v1/dossiers", "hung").json()["total"] == before


def test_a_bug_answers_500_with_the_error_body_and_no_detail(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure outside the error hierarchy (a bug, simulated here by a facade method that
    raises) is 500 with the API's one error body, naming nothing of the server's internals;
    the next request is served as usual."""
    from fastapi.testclient import TestClient

    from ocop_workflow.service import Ocop

    def broken(self: Ocop) -> Any:
        raise RuntimeError("secret /srv/ocop/internal detail")

    monkeypatch.setattr(Ocop, "workflows", broken)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    failed = client.get("/api/v1/workflows", headers=api.h("lan"))
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    assert failed.json()["error"]["code"] == "error"
    assert "secret" not in failed.text and "RuntimeError" not in failed.text
    assert client.get("/api/v1/dossiers", headers=api.h("lan")).status_code == 200


#: An option of the command line (``--reason``, ``--set``, ``--commune``) named in a message.
CLI_OPTION = re.compile(r"(?<![\w-])--[a-z]")


def test_api_errors_name_the_requests_inputs_never_a_command_line_option(api: Api) -> None:
    """An API client is told what it sent (``reason``, ``data.certificate_no``, ``commune``), as
    a web app would show it, never the command line's ``--reason``, ``--set …`` or
    ``--commune``: the facade words its errors for every caller, and ``fields`` names the
    request's inputs at fault where a message is about one."""
    d = "/api/v1/dossiers/" + api.register()["id"]
    council = "/api/v1/dossiers/" + import_before_council(api)
    score = {"member": "m1", "a": 30, "b": 20, "c": 20}
    register = {"product": "Tiêu", "producer": "HTX Cà phê Ia Le", "commune": "Ia le"}
    cases = [
        (api.post(f"{d}/advance", "lan", json={"trigger": "reject"}), ["reason"]),
        (api.post(f"{d}/advance", "lan", json={"trigger": "reject", "reason": "\x1b"}), ["reason"]),
        (
            api.post(
                f"{d}/advance",
                "lan",
                json={"trigger": "accept_idea", "data": {"producer_email": "x"}},
            ),
            ["data.producer_email"],
        ),
        (
            api.post(f"{d}/advance", "lan", json={"trigger": "accept_idea", "data": {"no": "x"}}),
            ["data.no"],
        ),
        (
            api.post(f"{council}/advance", "hung", json={"trigger": "certify"}),
            ["data.certificate_no", "data.decision_no"],
        ),
        (api.post(f"{council}/scores", "chair", json={**score, "a": 99}), ["a"]),
        (api.post(f"{council}/scores", "chair", json={**score, "note": "\x00"}), ["note"]),
        (api.post(f"{council}/scores", "chair", json={**score, "council": "no"}), ["council"]),
        (api.post(f"{council}/scoring/rescore", "chair", json={}), ["reason"]),
        (api.post("/api/v1/dossiers", "lan", json=register), ["commune"]),
        (api.get("/api/v1/dossiers?commune=Ia%20le", "lan"), ["commune"]),
        (api.get("/api/v1/dossiers?state=bussiness_plan", "lan"), ["state"]),
        (api.get("/api/v1/dossiers?stage=evaluating", "lan"), ["stage"]),
        (api.get("/api/v1/notifications?status=lost", "lan"), ["status"]),
        (api.get("/api/v1/workflows/ocop-1489/diagram?format=png", "lan"), None),
        (api.get("/api/v1/dossiers?limit=0", "lan"), None),
    ]
    for response, fields in cases:
        assert response.status_code >= 400, response.text
        error = response.json()["error"]
        assert error.get("fields") == fields, response.text
        for said in (error["message"], *error.get("reasons", ())):
            assert not CLI_OPTION.search(said), response.text


def test_requests_without_a_valid_token_are_401(api: Api) -> None:
    """On every way in, the list and the dossier page alike: the page authenticates on a path of
    its own (the token check and the page in one read), so it is checked here too."""
    page = f"/api/v1/dossiers/{api.register()['id']}"
    expired = api.ocop.create_token("lan", expires_days=1).token
    revoked = api.ocop.create_token("lan")
    api.ocop.revoke_token(revoked.info.id)
    for path in ("/api/v1/dossiers", page):
        for headers in (
            {},
            {"Authorization": "Bearer ocop_not-a-token"},
            {"Authorization": f"Basic {api.token('lan')}"},
            {"Authorization": f"Bearer {revoked.token}"},
        ):
            response = api.client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"] == "Bearer"
    # expired: the same token works before its expiry and not after (on the server's clock),
    # and a rehearsal instant from before the expiry does not bring it back
    bearer = {"Authorization": f"Bearer {expired}"}
    assert api.client.get("/api/v1/me", headers=bearer).json()["key"] == "lan"
    assert api.client.get(page, headers=bearer).status_code == 200
    api.ocop.clock.instant = NOW + timedelta(days=3)
    before_expiry = {**bearer, "X-Ocop-Now": NOW.isoformat()}
    for path in ("/api/v1/me", page):
        for headers in (bearer, before_expiry):
            late = api.client.get(path, headers=headers)
            assert late.status_code == 401, (path, headers, late.text)


def test_a_write_without_a_valid_token_is_401_even_when_its_body_is_malformed(api: Api) -> None:
    """A write checks its token in the same trip as its transaction, after the body is parsed;
    one that is both unauthenticated and malformed still learns only that it must log in, and
    nothing is written. A valid token with the malformed body gets the 422."""
    dossier = api.register()["id"]
    d = f"/api/v1/dossiers/{dossier}"
    writes = {
        "/api/v1/dossiers": {"product": "Cà phê", "producer": "HTX", "commune": "Ia Le"},
        f"{d}/advance": {"trigger": "accept_idea", "expect_version": 1},
        f"{d}/scores": {"member": "chair", "a": 10},
        f"{d}/scoring/close": {},
        f"{d}/scoring/rescore": {"reason": "làm lại"},
    }
    revoked = api.ocop.create_token("lan")
    api.ocop.revoke_token(revoked.info.id)
    before = dump_database(api.url)
    for path, body in writes.items():
        for headers in (
            {},
            {"Authorization": "Bearer ocop_not-a-token"},
            {"Authorization": f"Bearer {revoked.token}"},
        ):
            for sent in ({"json": body}, {"json": {"nonsense": [1]}}, {"content": b"{"}):
                response = api.client.post(path, headers=headers, **sent)
                assert response.status_code == 401, (path, headers, sent, response.text)
                assert response.json()["error"]["code"] == "unauthenticated"
        malformed = api.client.post(path, headers=api.h("lan"), content=b"{")
        assert malformed.status_code == 422, (path, malformed.text)
    assert dump_database(api.url) == before


def test_a_request_whose_body_is_not_json_is_401_without_credentials_but_a_login_is_422(
    api: Api,
) -> None:
    """A body that is not JSON is refused before any dependency runs: the sender is asked
    first on every route that needs one, and never on the open ones (a login with a stale
    token left in its headers is told what is wrong with its body)."""
    dossier = api.register()["id"]
    as_json = {"Content-Type": "application/json"}
    for path in (f"/api/v1/dossiers/{dossier}/advance", "/api/v1/dossiers"):
        response = api.client.post(path, headers=as_json, content=b"{")
        assert response.status_code == 401, (path, response.text)
    stale = api.ocop.create_token("lan")
    api.ocop.revoke_token(stale.info.id)
    for sent in ({"content": b"{"}, {"json": {"user": 1}}):
        login = api.client.post(
            "/api/v1/login", headers={**as_json, "Authorization": f"Bearer {stale.token}"}, **sent
        )
        assert login.status_code == 422, login.text


def test_a_bad_request_from_someone_already_authenticated_reads_the_token_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 422 handler asks for the sender only when no dependency has: a logged-in list with
    a bad ``limit`` costs one token read, not two."""
    from ocop_workflow.service import Ocop

    token = api.token("lan")
    reads: list[str] = []
    original = Ocop.authenticate

    def counted(self: Ocop, given: str) -> Any:
        reads.append(given)
        return original(self, given)

    monkeypatch.setattr(Ocop, "authenticate", counted)
    response = api.get("/api/v1/dossiers?limit=many", "lan")
    assert response.status_code == 422, response.text
    assert reads == [token]


def test_a_dossier_one_may_not_see_is_404_whatever_its_version_or_trigger(api: Api) -> None:
    """Whether the actor may see the dossier is asked before its version, its state's
    triggers or the reason are looked at: none of them tells a dossier that exists from one
    that does not."""
    dossier = api.register()["id"]
    for body in (
        {"trigger": "accept_idea", "expect_version": 99},
        {"trigger": "no_such_trigger"},
        {"trigger": "accept_idea", "reason": "x\x00"},
    ):
        for target in (dossier, "OCOP-2026-9999"):
            response = api.post(f"/api/v1/dossiers/{target}/advance", "tuan", json=body)
            assert response.status_code == 404, (target, body, response.text)
            assert response.json()["error"]["message"] == f"dossier {target} not found"


@pytest.mark.postgres
def test_a_dossier_one_may_not_see_is_404_at_once_while_someone_holds_its_row(
    tmp_path: Path, pg_url: str
) -> None:
    """A missing dossier is answered at once; one the actor may not see must be too, not after
    waiting for the lock of a transaction that is moving it (the wait would tell it exists)."""
    import threading
    import time

    import sqlalchemy as sa

    api = make_api(tmp_path, pg_url)
    dossier = api.register()["id"]
    holder = sa.create_engine(pg_url)
    other = holder.connect()
    other.execute(sa.text("SELECT 1 FROM dossier WHERE id = :i FOR UPDATE"), {"i": dossier})
    answers: dict[str, Any] = {}
    try:
        for target in ("OCOP-2026-9999", dossier):

            def advance(target: str = target) -> None:
                response = api.post(
                    f"/api/v1/dossiers/{target}/advance", "tuan", json={"trigger": "accept_idea"}
                )
                answers[target] = response.status_code

            thread = threading.Thread(target=advance, daemon=True)
            thread.start()
            thread.join(2.0)
        assert answers == {"OCOP-2026-9999": 404, dossier: 404}, answers
    finally:
        other.rollback()
        other.close()
        holder.dispose()
        time.sleep(0.2)
        api.ocop.store.dispose()


def test_the_rehearsal_header_sets_now_only_where_the_config_allows(
    tmp_path: Path, sqlite_url: str
) -> None:
    allowed = make_api(tmp_path / "a", sqlite_url.replace("ocop.db", "a.db"))
    dossier = allowed.register()
    moved = allowed.client.post(
        f"/api/v1/dossiers/{dossier['id']}/advance",
        headers=allowed.h("lan", **{"X-Ocop-Now": "2026-04-01T10:00+07:00"}),
        json={"trigger": "accept_idea"},
    )
    assert moved.json()["at"].startswith("2026-04-01T10:00")
    refused = make_api(tmp_path / "b", sqlite_url.replace("ocop.db", "b.db"), allow_override=False)
    response = refused.client.get(
        "/api/v1/dossiers", headers=refused.h("lan", **{"X-Ocop-Now": "2026-04-01T10:00+07:00"})
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "config"  # exit 1 through the CLI, as locally
    assert "allow_override" in response.json()["error"]["message"]


def test_list_pages_with_the_cli_filters(api: Api) -> None:
    ids = [api.register(product=f"Sản phẩm {i}")["id"] for i in range(5)]
    api.post(f"/api/v1/dossiers/{ids[0]}/advance", "lan", json={"trigger": "accept_idea"})
    page = api.get("/api/v1/dossiers?limit=2&offset=1", "lan").json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [d["id"] for d in page["items"]] == ids[1:3]
    moved = api.get("/api/v1/dossiers?state=business_plan", "lan").json()
    assert [d["id"] for d in moved["items"]] == [ids[0]]


def test_upload_attaches_and_those_who_may_see_download_it(api: Api, tmp_path: Path) -> None:
    dossier = api.register()
    content = "Phương án kinh doanh — bản scan".encode() * 100
    response = api.upload(
        dossier["id"], "htx_iale", "business_plan", "../../phuong-an.pdf", content
    )
    assert response.status_code == 201, response.text
    attached = response.json()
    assert attached["name"] == "phuong-an.pdf"  # the path part of a sent name is dropped
    assert attached["by"] == "htx_iale"
    got = api.get(f"/api/v1/dossiers/{dossier['id']}/documents/{attached['sha256']}", "lan")
    assert got.status_code == 200
    assert got.content == content
    missing = api.get(f"/api/v1/dossiers/{dossier['id']}/documents/{'0' * 64}", "lan")
    assert missing.status_code == 404


def test_an_upload_over_the_limit_is_413_and_stores_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    api = make_api(tmp_path, sqlite_url, extra="[documents]\nmax_bytes = 10000\n")
    dossier = api.register()
    before = dump_database(sqlite_url)
    response = api.upload(dossier["id"], "lan", "business_plan", "big.pdf", b"x" * 200_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert dump_database(sqlite_url) == before
    blobs = [p for p in (tmp_path / "documents").rglob("*") if p.is_file()]
    assert blobs == []


def test_an_upload_past_the_documents_a_dossier_may_hold_or_with_a_name_too_long_is_422(
    tmp_path: Path, db_url: str
) -> None:
    """Uploads are bounded in number per dossier (``[documents] max_per_dossier``) and in their
    name's length as a file system counts it (255 bytes of UTF-8: 86 Vietnamese letters with
    diacritics are more): either is 422 ``usage`` with nothing written, never a 500."""
    api = make_api(tmp_path, db_url, extra="[documents]\nmax_per_dossier = 1\n")
    try:
        dossier = api.register()["id"]
        long_name = "Phương án sản xuất kinh doanh " * 8 + ".pdf"
        assert len(long_name) <= 255 < len(long_name.encode())
        too_long = api.upload(dossier, "lan", "business_plan", long_name, b"%PDF-1.4 a")
        assert too_long.status_code == 422, too_long.text
        assert "255 bytes" in too_long.json()["error"]["message"]
        first = api.upload(dossier, "lan", "business_plan", "ke-hoach.pdf", b"%PDF-1.4 b")
        assert first.status_code == 201, first.text
        second = api.upload(dossier, "lan", "business_plan", "ke-hoach-2.pdf", b"%PDF-1.4 c")
        assert second.status_code == 422, second.text
        assert "max_per_dossier" in second.json()["error"]["message"]
        # who may not attach is told so first, full dossier or not
        auditor = api.upload(dossier, "auditor", "business_plan", "x.pdf", b"%PDF-1.4 d")
        assert auditor.status_code == 403, auditor.text
        shown = api.get(f"/api/v1/dossiers/{dossier}", "lan").json()
        assert [d["files"] for d in shown["documents"] if d["kind"] == "business_plan"] == [
            ["ke-hoach.pdf"]
        ]
    finally:
        api.ocop.store.dispose()


def test_uploads_and_imports_over_a_mebibyte_are_taken_up_to_the_document_limit(
    api: Api,
) -> None:
    """Other bodies stop at 1 MiB; a scan or a sheet may be as large as ``[documents]
    max_bytes`` (50 MiB by default)."""
    dossier = api.register()
    scan = b"%PDF-1.4\n" + b"x" * (2 << 20)
    attached = api.upload(dossier["id"], "lan", "business_plan", "ke-hoach.pdf", scan)
    assert attached.status_code == 201, attached.text
    assert attached.json()["size"] == len(scan)
    row = "Tiêu sọ Ia Phang,HTX Nông nghiệp Ia Phang,Ia Phang\n"
    sheet = "product,producer,commune\n" + row + "\n" * (2 << 20)  # blank lines are skipped
    imported = api.post(
        "/api/v1/imports", "tuan", files={"file": ("y-tuong.csv", sheet.encode(), "text/csv")}
    )
    assert imported.status_code == 200, imported.text
    listed = api.client.get("/api/v1/dossiers", headers=api.h("tuan")).json()
    assert "Tiêu sọ Ia Phang" in {d["product"] for d in listed["items"]}, listed


def test_a_login_with_text_no_database_can_hold_is_a_wrong_login_not_a_500(api: Api) -> None:
    """Anyone may try to log in: a lone surrogate or a NUL in the user or the password (legal
    JSON) is a wrong login (401, counted for throttling), never a 500 with a traceback in the
    log; the right password still logs in afterwards."""
    api.ocop.set_password("lan", "mật khẩu đủ dài")
    for body in (  # JSON text: its escapes are what a client may send
        '{"user": "lan\\ud800", "password": "x"}',
        '{"user": "lan", "password": "x\\ud800"}',
        '{"user": "lan\\u0000", "password": "x"}',
    ):
        headers = {"Content-Type": "application/json"}
        answer = api.client.post("/api/v1/login", content=body, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthenticated"
    good = api.client.post("/api/v1/login", json={"user": "lan", "password": "mật khẩu đủ dài"})
    assert good.status_code == 200, good.text


def test_an_error_quoting_a_lone_surrogate_of_the_request_is_told_not_a_500(api: Api) -> None:
    """A refusal quotes what was sent (an unknown trigger, a data field's name, its fields):
    a lone surrogate there (legal JSON, not encodable as UTF-8) is shown escaped in the error
    body, with the refusal's own status."""
    dossier = api.register()["id"]
    headers = {**api.h("lan"), "Content-Type": "application/json"}
    for body, status in (
        ('{"trigger": "x\\ud800"}', 404),
        ('{"trigger": "accept_idea", "data": {"k\\ud800": 1}}', 422),
    ):
        answer = api.client.post(
            f"/api/v1/dossiers/{dossier}/advance", content=body, headers=headers
        )
        assert answer.status_code == status, answer.text
        assert "\\ud800" in answer.text  # escaped, as JSON text carries it


def test_password_login_yields_a_session_token(api: Api) -> None:
    api.ocop.set_password("lan", "mật khẩu đủ dài")
    response = api.client.post("/api/v1/login", json={"user": "lan", "password": "mật khẩu đủ dài"})
    assert response.status_code == 200, response.text
    session = response.json()["token"]
    me = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert me.json()["key"] == "lan"
    out = api.client.post("/api/v1/logout", headers={"Authorization": f"Bearer {session}"})
    assert out.json() == {"revoked": True}
    again = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert again.status_code == 401


def test_failed_logins_are_throttled_per_user_and_per_address(api: Api) -> None:
    api.ocop.set_password("lan", "mật khẩu đủ dài")
    api.ocop.set_password("tuan", "một mật khẩu khác")
    for _ in range(5):
        wrong = api.client.post("/api/v1/login", json={"user": "lan", "password": "đoán thử 1"})
        assert wrong.status_code == 401
    # even the right password is refused now: the guesser cannot tell it found it
    right = api.client.post("/api/v1/login", json={"user": "lan", "password": "mật khẩu đủ dài"})
    assert right.status_code == 429
    assert right.json()["error"]["code"] == "throttled"
    # the same address is throttled for another user too (one guesser, many names)
    other = api.client.post("/api/v1/login", json={"user": "tuan", "password": "một mật khẩu khác"})
    assert other.status_code == 429
    # after the window (on the server's clock), the right password works again
    api.ocop.clock.instant = NOW + timedelta(minutes=16)
    right = api.client.post("/api/v1/login", json={"user": "lan", "password": "mật khẩu đủ dài"})
    assert right.status_code == 200


def test_health_readiness_and_the_openapi_document(api: Api, tmp_path: Path) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert "ocop-1489" in ready.json()["workflows"]
    paths = api.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/dossiers",
        "/api/v1/dossiers/{dossier_id}/advance",
        "/api/v1/dossiers/{dossier_id}/documents",
        "/api/v1/audit/verify",
        "/api/v1/reports/progress",
        "/api/v1/login",
    ):
        assert path in paths, sorted(paths)
    # /audit/verify reads its body itself (after the permission check): still documented
    verify = paths["/api/v1/audit/verify"]["post"]["requestBody"]
    schema = verify["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"dossier", "checkpoints", "names", "public_key"}
    assert "$defs" not in schema and "$ref" not in str(schema)  # nothing left unresolved


def test_readyz_is_503_on_a_database_ocop_init_never_prepared(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ocop_workflow.clock import ManualClock
    from ocop_workflow.config import load_config
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    write_config(tmp_path)
    (tmp_path / "empty.db").touch()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    ocop = Ocop(load_config(tmp_path / "config.toml", {"OCOP_DATABASE_URL": url}), ManualClock(NOW))
    client = TestClient(create_app(ocop))
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "ocop init" in ready.json()["error"]["message"]


def test_council_scoring_through_the_api_from_an_imported_dossier(api: Api) -> None:
    path = "/api/v1/dossiers/" + import_before_council(api)
    assert api.get(path, "m1").status_code == 200  # before their council: members see it
    for member in ("chair", "m1", "m2", "m3", "m4", "m5"):
        scored = api.post(
            f"{path}/scores", "chair", json={"member": member, "a": 30, "b": 20, "c": 22}
        )
        assert scored.status_code == 200, scored.text
    closed = api.post(f"{path}/scoring/close", "chair", json={})
    assert closed.status_code == 200, closed.text
    result = closed.json()["scoring"]["province"]["result"]
    assert (result["score"], result["stars"]) == (72, 3)
    not_chair = api.post(f"{path}/scoring/close", "m1", json={})
    assert not_chair.status_code == 403
    history = api.get(f"{path}/history", "auditor").json()
    assert [e["actor"] for e in history][-1] == "chair"
    assert api.get("/api/v1/audit/verify", "auditor").json()["ok"] is True
    export = api.get("/api/v1/audit/export?format=jsonl", "auditor")
    assert export.status_code == 200
    assert "OCOP-T-1" in export.text


#: Who sees and may act on a registration-stage dossier of HTX Cà phê Ia Le (commune Ia Le):
#: 2xx allowed, 403 seen but refused, 404 not even told it exists.
USERS = ("lan", "tuan", "hung", "minh", "htx_iale", "htx_other", "council", "auditor")
READ = dict(zip(USERS, (200, 404, 200, 200, 200, 404, 404, 200), strict=True))
TABLE: list[tuple[str, str, dict[str, int]]] = [
    ("GET", "{d}", READ),
    ("GET", "{d}/history", READ),
    ("GET", "{d}/triggers", READ),
    ("GET", "/api/v1/timers?dossier={id}", READ),
    ("GET", "/api/v1/notifications?dossier={id}", READ),
    # reject without a reason: those who may act reach the guard (409 refused), others 403/404
    (
        "POST reject",
        "{d}/advance",
        dict(zip(USERS, (409, 404, 403, 403, 403, 404, 404, 403), strict=True)),
    ),
    (
        "UPLOAD",
        "{d}/documents",
        dict(zip(USERS, (201, 404, 201, 201, 201, 404, 404, 403), strict=True)),
    ),
    (
        "POST score",
        "{d}/scores",
        dict(zip(USERS, (403, 404, 403, 403, 403, 404, 404, 403), strict=True)),
    ),
    (
        "GET",
        "/api/v1/audit/verify",
        dict(zip(USERS, (403, 403, 200, 200, 403, 403, 403, 200), strict=True)),
    ),
    (
        "GET",
        "/api/v1/reports/progress?year=2026",
        dict(zip(USERS, (403, 403, 200, 200, 403, 403, 403, 200), strict=True)),
    ),
]


def test_every_endpoint_by_every_role_is_allowed_refused_or_hidden(api: Api) -> None:
    dossier = api.register()["id"]
    d = f"/api/v1/dossiers/{dossier}"
    seen = {}
    for method, template, _ in TABLE:
        path = template.format(d=d, id=dossier)
        for user in USERS:
            if method == "GET":
                response = api.get(path, user)
            elif method == "POST reject":
                response = api.post(path, user, json={"trigger": "reject"})
            elif method == "POST score":
                response = api.post(path, user, json={"member": user, "a": 1})
            else:
                response = api.post(
                    path,
                    user,
                    data={"kind": "business_plan"},
                    files={"file": (f"{user}.pdf", user.encode(), "application/pdf")},
                )
            seen[(method, template, user)] = response.status_code
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}
            if response.status_code == 404:  # the same answer as for a dossier that never was
                assert response.json()["error"]["message"] == f"dossier {dossier} not found"
    wanted = {(m, t, u): code for m, t, e in TABLE for u, code in e.items()}
    assert seen == wanted


def test_lists_hold_only_what_each_person_may_see(api: Api) -> None:
    mine = api.register()["id"]
    api.register(user="tuan", commune="Ia Phang", producer="HTX Ia Phang", product="Hồ tiêu")
    for user, expected in (
        ("lan", [mine]),
        ("htx_iale", [mine]),
        ("htx_other", []),
        ("council", []),
        ("auditor", None),
        ("hung", None),
    ):
        page = api.get("/api/v1/dossiers", user).json()
        ids = [i["id"] for i in page["items"]]
        assert page["total"] == len(ids), (user, page["total"])  # nothing hidden is counted
        assert ids == expected if expected is not None else len(ids) == 2, (user, ids)


def test_a_trusted_proxy_header_names_the_user_only_where_configured(
    tmp_path: Path, sqlite_url: str
) -> None:
    from fastapi.testclient import TestClient

    off = make_api(tmp_path / "off", sqlite_url.replace("ocop.db", "off.db"))
    assert off.client.get("/api/v1/me", headers={"X-Remote-User": "lan"}).status_code == 401
    on = make_api(
        tmp_path / "on",
        sqlite_url.replace("ocop.db", "on.db"),
        extra='[server]\ntrusted_user_header = "X-Remote-User"\ntrusted_proxies = ["10.0.0.1"]\n',
    )
    proxy = TestClient(on.client.app, client=("10.0.0.1", 50000))
    assert proxy.get("/api/v1/me", headers={"X-Remote-User": "lan"}).json()["key"] == "lan"
    assert proxy.get("/api/v1/me", headers={"X-Remote-User": "nobody"}).status_code == 401
    # a bearer token still wins over the header: the token says who calls
    both = proxy.get(
        "/api/v1/me",
        headers={"X-Remote-User": "hung", "Authorization": f"Bearer {on.token('lan')}"},
    )
    assert both.json()["key"] == "lan"
    # from any other peer the header names nobody, even one forwarding for the proxy's address
    for peer in ("203.0.113.5", "10.0.0.2", "127.0.0.1"):
        other = TestClient(on.client.app, client=(peer, 50000))
        sent = other.get(
            "/api/v1/me", headers={"X-Remote-User": "lan", "X-Forwarded-For": "10.0.0.1"}
        )
        assert sent.status_code == 401, peer


def test_data_values_from_json_are_checked_like_set(api: Api) -> None:
    dossier = api.register()
    path = f"/api/v1/dossiers/{dossier['id']}/advance"
    for data, words in (
        ({"stars": 5}, "protected"),
        ({"nonsense": "x"}, "unknown data field"),
        ({"producer_email": ["a"]}, "expected a string or a number"),
        ({"producer_email": "not-an-email"}, "e-mail"),
    ):
        response = api.post(path, "lan", json={"trigger": "accept_idea", "data": data})
        assert response.status_code == 422, (data, response.text)
        assert words in response.json()["error"]["message"], response.text
    assert api.get(f"/api/v1/dossiers/{dossier['id']}", "lan").json()["version"] == 1


def test_every_error_code_a_server_sends_is_raised_by_the_cli_with_its_exit_code() -> None:
    """The CLI through a server exits as it would locally: each class of the one hierarchy
    (errors.py, auth.Throttled, importer.ImportRejected) is found by its ``code``."""
    import ocop_workflow.auth
    import ocop_workflow.importer
    from ocop_workflow.client import _errors
    from ocop_workflow.errors import OcopError

    classes, pending = [], [OcopError]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    assert ocop_workflow.auth.Throttled in classes
    for cls in classes:
        assert _errors()[cls.code].exit_code == cls.exit_code, cls


def test_the_api_answers_with_the_documents_the_cli_prints(api: Api, tmp_path: Path) -> None:
    """One definition of each output: for the same database and instant, every read the API
    serves is the JSON ``ocop … --json`` prints (shapes.py's to_json on both sides)."""
    from conftest import Workspace

    dossier = api.register("lan")["id"]
    moved = api.post(f"/api/v1/dossiers/{dossier}/advance", "lan", json={"trigger": "accept_idea"})
    assert moved.status_code == 200, moved.text
    ws = Workspace(tmp_path, api.url)
    now = NOW.isoformat()

    def cli(*args: str) -> Any:
        return ws.run(*args, "--json", user="lan", now=now, check=True).json()

    assert api.get(f"/api/v1/dossiers/{dossier}", "lan").json() == cli("dossier", "show", dossier)
    assert api.get("/api/v1/dossiers", "lan").json()["items"] == cli("dossier", "list")
    assert api.get(f"/api/v1/dossiers/{dossier}/triggers", "lan").json() == cli(
        "dossier", "triggers", dossier
    )
    assert api.get("/api/v1/timers?all=true", "lan").json() == cli("timers", "list", "--all")
    assert api.get("/api/v1/notifications", "lan").json() == cli("notifications", "list")
    # A workflow's file: its path on this machine for a command, its name only from the
    # server (whose folders are its operator's business).
    shown, listed = cli("workflow", "show", "ocop-1489"), cli("workflow", "list")
    for local in (shown, *listed):
        assert Path(local["file"]).is_absolute()
        local["file"] = Path(local["file"]).name
    assert api.get("/api/v1/workflows/ocop-1489", "lan").json() == shown
    assert api.get("/api/v1/workflows", "lan").json() == listed
    progress = api.get("/api/v1/reports/progress?year=2026", "hung").json()
    assert progress == cli("report", "progress", "--year", "2026")
    history = cli("dossier", "history", dossier)
    assert api.get(f"/api/v1/dossiers/{dossier}/history", "lan").json() == history
    assert moved.json()["seq"] == history[-1]["seq"] and moved.json()["at"] == history[-1]["at"]


def test_a_nul_in_a_dossier_id_is_bad_input_not_a_database_outage(api: Api) -> None:
    """PostgreSQL cannot hold a NUL: the read refuses it as bad input (SQLite: no such dossier),
    never "database unreachable" (503), and the pooled connection goes on serving."""
    made = api.register()
    for path in ("/api/v1/dossiers/a%00b", "/api/v1/dossiers/a%00b/history"):
        refused = api.get(path, "lan")
        assert refused.status_code in (404, 422), refused.text
        assert refused.json()["error"]["code"] in ("not_found", "usage")
    for _ in range(3):
        assert api.get(f"/api/v1/dossiers/{made['id']}", "lan").status_code == 200


def test_an_advance_on_an_id_with_a_nul_is_401_without_a_valid_token_and_422_with_one(
    api: Api,
) -> None:
    """The server's advance reads the token's row and the dossier's together before it
    authenticates (PostgreSQL); an id the database cannot take must not turn that read into
    an answer about the input before the sender is known."""
    api.register()
    made_up = {"Authorization": "Bearer ocop_" + "x" * 43}
    path = "/api/v1/dossiers/OCOP%00x/advance"
    body = {"trigger": "accept_idea"}
    refused = api.client.post(path, headers=made_up, json=body)
    assert refused.status_code == 401, refused.text
    answered = api.post(path, "lan", json=body)
    assert answered.status_code in (404, 422), answered.text  # SQLite: no such dossier


def test_a_page_of_an_id_with_a_nul_is_401_without_a_valid_token_and_422_or_404_with_one(
    api: Api,
) -> None:
    """On PostgreSQL a dossier's page is read with its token's row in one statement, in a batch
    with other requests' pages: neither a made-up token nor an id the database cannot take may
    turn that read into an answer about the input before the sender is known."""
    api.register()
    path = "/api/v1/dossiers/OCOP%00x"
    for token in ("ocop_" + "x" * 43, "not-a-token", "ocop_bad token"):
        headers = {"Authorization": f"Bearer {token}"}
        refused = api.client.get(path, headers=headers)
        assert refused.status_code == 401, (token, refused.text)
    answered = api.get(path, "lan")
    assert answered.status_code in (404, 422), answered.text  # SQLite: no such dossier


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz (installed by .ci/run)")
def test_an_svg_diagram_is_laid_out_once_however_often_it_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any token holder may ask for a workflow's SVG: a Graphviz process per request would let
    them keep the server's cores busy. ``dot`` on PATH is a wrapper that counts its runs."""
    from ocop_workflow.diagram import layout

    real = shutil.which("dot")
    shim = tmp_path / "bin"
    shim.mkdir()
    runs = tmp_path / "runs"
    (shim / "dot").write_text(f'#!/bin/sh\necho run >> "{runs}"\nexec "{real}" "$@"\n')
    (shim / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    layout.cache_clear()
    api = make_api(tmp_path / "app", f"sqlite:///{tmp_path / 'ocop.db'}")
    try:
        drawn = [api.get("/api/v1/workflows/ocop-1489/diagram?format=svg", "lan") for _ in range(3)]
    finally:
        api.ocop.store.dispose()
        layout.cache_clear()
    assert all(r.status_code == 200 for r in drawn), drawn[0].text
    assert "<svg" in drawn[0].text and drawn[0].text == drawn[2].text
    assert runs.read_text().splitlines() == ["run"]


def test_a_server_without_graphviz_says_so_and_what_works_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database's problems reach clients only as "see the log" (they name the database);
    Graphviz missing is no database problem, and its message says to ask for dot or mermaid."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    api = make_api(tmp_path / "app", f"sqlite:///{tmp_path / 'ocop.db'}")
    try:
        drawn = api.get("/api/v1/workflows/ocop-1489/diagram?format=svg", "lan")
        mermaid = api.get("/api/v1/workflows/ocop-1489/diagram", "lan")
    finally:
        api.ocop.store.dispose()
    assert drawn.status_code == 503, drawn.text
    message = drawn.json()["error"]["message"]
    assert "Graphviz" in message and "mermaid" in message and "database" not in message
    assert mermaid.status_code == 200 and mermaid.text.startswith("stateDiagram")


def test_readyz_says_the_workflows_do_not_load_without_naming_the_servers_files(
    tmp_path: Path,
) -> None:
    """``/readyz`` answers anyone: a broken workflow file is 503, its path and its problem
    only in the server's log."""
    from conftest import WORKFLOWS
    from fastapi.testclient import TestClient

    from ocop_workflow.clock import ManualClock
    from ocop_workflow.config import load_config
    from ocop_workflow.migrate import upgrade
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    folder = tmp_path / "quy-trinh"
    shutil.copytree(WORKFLOWS, folder)
    (folder / "hong.toml").write_text("x = 1\n", encoding="utf-8")
    write_config(tmp_path)
    config_file = tmp_path / "config.toml"
    text = config_file.read_text(encoding="utf-8").replace(str(WORKFLOWS), str(folder))
    config_file.write_text(text, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'ocop.db'}"
    ocop = Ocop(load_config(config_file, {"OCOP_DATABASE_URL": url}), ManualClock(NOW))
    upgrade(ocop.store)
    ready = TestClient(create_app(ocop)).get("/readyz")
    ocop.store.dispose()
    assert ready.status_code == 503, ready.text
    assert "workflows do not load" in ready.json()["error"]["message"]
    assert str(tmp_path) not in ready.text and "hong.toml" not in ready.text


def test_a_graphviz_that_fails_without_a_word_is_named_by_its_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``dot`` that fails with nothing on stderr (killed, a broken build) made the message
    itself fail (an IndexError: a 500 from the server, a traceback from the CLI)."""
    from ocop_workflow.diagram import layout
    from ocop_workflow.errors import MissingTool

    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    layout.cache_clear()
    with pytest.raises(MissingTool, match="graphviz failed: exit 3"):
        layout("digraph { a -> b }")
