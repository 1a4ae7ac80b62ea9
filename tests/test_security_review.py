"""A second hostile review (2026-12-07): what a low-privilege token, no token, or a crafted file
could learn or break that the first review (test_hostile_review.py) did not try.

Each test is one attack against the real app (httpx against the ASGI app in-process) or the real
``ocop`` command, and the behaviour the office relies on: nothing about a dossier one may not see
is told, bad input is a one-line error with its documented exit code (422 through the server),
and the database is exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Workspace, dump_database, import_before_council

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2:DeprecationWarning")


def _served(root: Path, url: str) -> Iterator[Any]:
    """The app on ``url``; a server error is a 500 answer, as a real client sees it."""
    from fastapi.testclient import TestClient
    from test_server import make_api

    made = make_api(root, url)
    made.client = TestClient(made.client.app, raise_server_exceptions=False)
    try:
        yield made
    finally:
        made.ocop.store.dispose()


@pytest.fixture
def server_api(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    """The app on a SQLite file."""
    yield from _served(tmp_path, sqlite_url)


@pytest.fixture
def both_api(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """The app on SQLite and on PostgreSQL."""
    yield from _served(tmp_path, db_url)


# --- list filters: a commune one may not see is not a commune one is told of -------------------


def test_the_commune_filter_tells_no_commune_of_a_dossier_one_may_not_see(both_api: Any) -> None:
    """Without ``[communes] names``, the known communes include those of dossiers on file. A
    producer or a commune officer probing ``?commune=`` must not learn that dossiers exist in
    a commune outside their scope: not by 200 against 404, not from "known: …", not from "did
    you mean …"."""
    api = both_api
    api.register(user="hung", commune="Xã Bí Mật", producer="HTX Bí Mật", product="Mật ong")
    for user in ("htx_iale", "lan", "council"):
        hidden = api.get("/api/v1/dossiers", user, params={"commune": "Xã Bí Mật"})
        never = api.get("/api/v1/dossiers", user, params={"commune": "Xã Không Có"})
        typo = api.get("/api/v1/dossiers", user, params={"commune": "Xa Bi Matt"})
        assert hidden.status_code == never.status_code == typo.status_code == 404, hidden.text
        for answer in (hidden, never, typo):
            assert "Bí Mật" not in answer.json()["error"]["message"].replace("'Xã Bí Mật'", "")
    # those who may see it still filter by it, and are still told of the typo
    seen = api.get("/api/v1/dossiers", "hung", params={"commune": "Xã Bí Mật"})
    assert seen.status_code == 200 and seen.json()["total"] == 1
    typo = api.get("/api/v1/dossiers", "auditor", params={"commune": "Xa Bi Matt"})
    assert typo.status_code == 404 and "did you mean 'Xã Bí Mật'" in typo.text
    # a commune of one's own dossiers that no user's scope names is still a known one
    api.register(user="hung", commune="Xã Xa", producer="HTX Cà phê Ia Le", product="Cà phê")
    own = api.get("/api/v1/dossiers", "htx_iale", params={"commune": "Xã Xa"})
    assert own.status_code == 200 and own.json()["total"] == 1, own.text


# --- paging: numbers the database cannot hold ---------------------------------------------------


@pytest.mark.parametrize("offset", ["9223372036854775808", "1" + "0" * 30])
def test_an_offset_past_what_the_database_counts_is_422_not_a_server_error(
    both_api: Any, offset: str
) -> None:
    api = both_api
    api.register()
    answer = api.get("/api/v1/dossiers", "lan", params={"offset": offset})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "usage"
    last = api.get("/api/v1/dossiers", "lan", params={"offset": str(2**63 - 1)})
    assert last.status_code == 200 and last.json()["items"] == [], last.text


# --- import files: a sheet that is not what it says --------------------------------------------

NOW = "2026-03-02T09:00:00+07:00"


def _xlsx(path: Path, edit: Any) -> Path:
    """A one-row dossier sheet whose worksheet XML ``edit`` rewrites (a crafted file)."""
    import io
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["product", "producer", "commune"])
    book.active.append(["Cà phê", "HTX Cà phê Ia Le", "Ia Le"])
    made = io.BytesIO()
    book.save(made)
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = edit(data.decode("utf-8")).encode("utf-8")
            out.writestr(info, data)
    return path


def assert_unreadable_sheet_refused(ws: Workspace, path: Path) -> None:
    """``ocop import PATH``: one line, exit 2, "cannot be read as .xlsx", nothing written."""
    before = dump_database(ws.url)
    done = ws.run("import", str(path), user="lan", now=NOW)
    assert done.code == 2, done
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
    assert "cannot be read as .xlsx" in done.stderr, done
    assert dump_database(ws.url) == before


#: "Billion laughs": nine levels of ten entities each, a gigabyte of "lol" from a kilobyte.
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY l0 "lol">'
    + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    + "]>"
)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda xml: LAUGHS + xml[xml.index("<worksheet") :].replace(">Cà phê<", ">&l9;<", 1),
            id="entity-expansion",
        ),
        pytest.param(lambda xml: xml[: len(xml) // 2], id="cut-in-half"),
        pytest.param(lambda xml: xml.replace("<sheetData>", "<sheetData><row>", 1), id="unclosed"),
        pytest.param(
            lambda xml: re.sub(r'<c r="A2"[^>]*>.*?</c>', '<c r="A2" t="s"><v>99999</v></c>', xml),
            id="shared-string-out-of-range",
        ),
    ],
)
def test_an_xlsx_whose_sheet_is_not_well_formed_xml_is_one_line_exit_2(
    sqlite_workspace: Workspace, edit: Any
) -> None:
    """openpyxl parses the sheet with the standard library's XML parser, whose refusal (a
    ``ParseError``, not a ``ValueError``) came out as a traceback from the CLI and a 500 from
    the server; so did a cell naming a shared string past the end of the table."""
    ws = sqlite_workspace
    path = _xlsx(ws.root / "ho-so.xlsx", edit)
    assert_unreadable_sheet_refused(ws, path)


def test_an_xlsx_whose_compressed_sheet_is_damaged_is_one_line_exit_2(
    sqlite_workspace: Workspace,
) -> None:
    """zipfile checks a member's CRC only at its end: damaged deflate data in the middle is a
    ``zlib.error`` while openpyxl streams the sheet (it was an "unexpected error", exit 1)."""
    import zipfile

    ws = sqlite_workspace
    padding = "<!--" + " ".join(str(i * 7919 % 10007) for i in range(3000)) + "-->"
    path = _xlsx(
        ws.root / "ho-so.xlsx", lambda xml: xml.replace("<sheetData>", padding + "<sheetData>")
    )
    with zipfile.ZipFile(path) as book:
        member = book.getinfo("xl/worksheets/sheet1.xml")
    raw = bytearray(path.read_bytes())
    # the local header: 30 bytes, the name, the extra field; then the compressed data
    start = member.header_offset + 30 + len(member.filename.encode())
    start += int.from_bytes(raw[member.header_offset + 28 : member.header_offset + 30], "little")
    middle = start + member.compress_size // 3
    raw[middle : middle + 20] = bytes(b ^ 0x5A for b in raw[middle : middle + 20])
    path.write_bytes(bytes(raw))
    assert_unreadable_sheet_refused(ws, path)


def test_an_xlsx_openpyxl_fails_on_in_any_way_is_one_line_exit_2(
    sqlite_workspace: Workspace,
) -> None:
    """openpyxl's failures on a crafted file are too many to list one by one: members in a
    compression method zipfile does not know (``NotImplementedError``) came out as an
    "unexpected error", exit 1 (a 500 through the server), after the failures listed before."""
    ws = sqlite_workspace
    raw = bytearray(_xlsx(ws.root / "ho-so.xlsx", lambda xml: xml).read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = raw.find(signature)
        while at != -1:  # every local and central header: compression method 99
            raw[at + offset : at + offset + 2] = (99).to_bytes(2, "little")
            at = raw.find(signature, at + 4)
    path = ws.root / "ho-so.xlsx"
    path.write_bytes(bytes(raw))
    assert_unreadable_sheet_refused(ws, path)


def test_an_xlsx_import_through_the_server_that_is_not_xml_is_422(
    server_api: Any, tmp_path: Path
) -> None:
    api = server_api
    path = _xlsx(tmp_path / "ho-so.xlsx", lambda xml: xml[: len(xml) // 2])
    answer = api.post(
        "/api/v1/imports", "htx_iale", files={"file": ("ho-so.xlsx", path.read_bytes())}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "usage"
    # named as sent: the server's temporary folder is nobody's business
    message = answer.json()["error"]["message"]
    assert message.startswith("ho-so.xlsx: cannot be read"), message
    assert "ocop-import-" not in message, message


@pytest.mark.parametrize(
    "header",
    ["product,producer,commune,product", "product,producer,commune, product "],
)
def test_a_sheet_naming_a_column_twice_is_refused_not_read_by_its_last_copy(
    sqlite_workspace: Workspace, header: str
) -> None:
    """A reviewer opening the sheet reads the first "product" column; the importer read the
    last one. A crafted file could so show one value and register another."""
    ws = sqlite_workspace
    path = ws.root / "ho-so.csv"
    path.write_text(f"{header}\nCà phê sạch,HTX Cà phê Ia Le,Ia Le,Cà phê khác\n", encoding="utf-8")
    before = dump_database(ws.url)
    done = ws.run("import", str(path), user="lan", now=NOW)
    assert done.code == 2, done
    assert "product" in done.stderr and "twice" in done.stderr, done
    assert done.stderr.count("\n") == 1, done
    assert dump_database(ws.url) == before


def test_an_xlsx_naming_a_column_twice_is_refused(sqlite_workspace: Workspace) -> None:
    from openpyxl import Workbook

    ws = sqlite_workspace
    path = ws.root / "ho-so.xlsx"
    book = Workbook()
    book.active.append(["product", "producer", "commune", "producer"])
    book.active.append(["Cà phê", "HTX Cà phê Ia Le", "Ia Le", "HTX Hồ tiêu Ia Le"])
    book.save(path)
    done = ws.run("import", str(path), user="lan", now=NOW)
    assert done.code == 2 and "producer" in done.stderr and "twice" in done.stderr, done


# --- logins: a new password ends the sessions of the old one ----------------------------------


def test_setting_a_new_password_ends_the_sessions_logged_in_with_the_old_one(
    server_api: Any,
) -> None:
    """The office resets a password because someone else learnt it: that someone must not keep
    the session they opened with it for the rest of ``session_hours``. API tokens made with
    ``ocop token create`` do not come from the password and stay (``ocop token revoke``)."""
    api = server_api
    api.ocop.set_password("lan", "mật khẩu bị lộ")
    stolen = api.client.post("/api/v1/login", json={"user": "lan", "password": "mật khẩu bị lộ"})
    assert stolen.status_code == 200, stolen.text
    session = {"Authorization": f"Bearer {stolen.json()['token']}"}
    laptop = api.h("lan")  # an API token of lan's
    assert api.client.get("/api/v1/me", headers=session).status_code == 200
    api.ocop.set_password("lan", "mật khẩu mới của Lan")
    assert api.client.get("/api/v1/me", headers=session).status_code == 401
    assert api.client.get("/api/v1/me", headers=laptop).status_code == 200
    fresh = api.client.post(
        "/api/v1/login", json={"user": "lan", "password": "mật khẩu mới của Lan"}
    )
    assert fresh.status_code == 200, fresh.text
    other = {"Authorization": f"Bearer {fresh.json()['token']}"}
    assert api.client.get("/api/v1/me", headers=other).status_code == 200


# --- council scoring: the member named in a body is no oracle of user keys ---------------------


def test_scoring_as_nobody_of_the_council_tells_not_which_user_keys_exist(
    server_api: Any,
) -> None:
    """A producer who may see its dossier named ``member`` in ``POST /scores``: an unknown key
    was 404 "not a user in /path/of/config.toml" before anyone asked whether the producer may
    score at all, a known one 403 — a way to list the province's logins, and the server's
    config path with it."""
    api = server_api
    dossier = api.register()["id"]
    answers = {
        member: api.post(f"/api/v1/dossiers/{dossier}/scores", "htx_iale", json={"member": member})
        for member in ("lan", "chair", "no_such_user", "system")
    }
    assert {m: a.status_code for m, a in answers.items()} == dict.fromkeys(answers, 403)
    messages = {a.json()["error"]["message"] for a in answers.values()}
    assert len(messages) == 1 and "config.toml" not in messages.pop()


def test_a_council_member_learns_neither_user_keys_nor_the_servers_config_path(
    server_api: Any,
) -> None:
    """A member may score only themselves: naming another showed "unknown member" for a
    made-up key and "not a member of council" for a real one (an oracle of logins), and an
    unknown ``council`` named the server's config file with its path."""
    api = server_api
    path = f"/api/v1/dossiers/{import_before_council(api)}/scores"
    answers = {
        member: api.post(path, "m1", json={"member": member, "a": 30, "b": 20, "c": 22})
        for member in ("lan", "no_such_user")
    }
    said = {
        m: (a.status_code, a.json()["error"]["message"].replace(m, "NAME"))
        for m, a in answers.items()
    }
    assert said["lan"] == said["no_such_user"], said  # the same answer, the name aside
    assert said["lan"][1].startswith("NAME is not a member of council tinh"), said
    unknown = api.post(path, "m1", json={"member": "m1", "a": 30, "council": "nope"})
    assert unknown.status_code == 404, unknown.text
    message = unknown.json()["error"]["message"]
    assert "config.toml" in message and str(api.ocop.config.path) not in message, message


# --- the CLI through a server: plain http only to this machine ---------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.attacker.example:8000", "http://127.0.0.1.attacker.example", "http://127.1x"],
)
def test_plain_http_to_a_host_named_like_loopback_is_refused(url: str) -> None:
    """``127.`` as the start of a host name is not the loopback network: the token would
    cross the network in clear to whatever that name resolves to."""
    from ocop_workflow.client import check_server_url
    from ocop_workflow.errors import ConfigError

    with pytest.raises(ConfigError, match="use https://"):
        check_server_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.8.9.10", "http://[::1]:8000", "http://localhost"]
)
def test_plain_http_to_this_machine_stays_allowed(url: str) -> None:
    from ocop_workflow.client import check_server_url

    assert check_server_url(url) == url


# --- no token at all: an outage tells nothing of where the database is ------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://ocop_hidden_role:pw@127.0.0.1:1/ocop_hidden_db",
        "sqlite:///{root}/hidden-folder/never-made.db",
    ],
)
def test_an_anonymous_client_is_not_told_the_database_url_when_it_is_down(
    tmp_path: Path, url: str
) -> None:
    """``/readyz``, ``/login`` and any request with a made-up token answer 503 when the database
    cannot be used; the message named the database URL (user, host, port, database name, or the
    SQLite file's path) and the driver's words, to anyone. The server's log keeps them."""
    from conftest import write_config
    from fastapi.testclient import TestClient

    from ocop_workflow.clock import SystemClock
    from ocop_workflow.config import load_config
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    write_config(tmp_path)
    url = url.format(root=tmp_path)
    config = load_config(tmp_path / "config.toml", {"OCOP_DATABASE_URL": url})
    client = TestClient(create_app(Ocop(config, SystemClock())), raise_server_exceptions=False)
    answers = [
        client.get("/readyz"),
        client.post("/api/v1/login", json={"user": "lan", "password": "đoán thử"}),
        client.get("/api/v1/me", headers={"Authorization": "Bearer ocop_made_up"}),
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "environment"
        for secret in ("hidden", "127.0.0.1", str(tmp_path)):
            assert secret not in answer.text, answer.text


# --- a shell on the server machine: the SQLite file is the credential --------------------------


@pytest.mark.parametrize("options", ["", "?timeout=5"])
def test_ocop_init_creates_the_sqlite_file_readable_by_its_owner_only(
    tmp_path: Path, options: str
) -> None:
    """A SQLite database's credential is its file: created ``0644`` under the usual umask,
    every login on the machine could read every dossier and the password hashes, around the
    policy — the README's ``0600`` was left to the operator. Its WAL and shared-memory files
    take the database file's mode."""
    import os
    import sqlite3
    import stat

    from conftest import write_config

    write_config(tmp_path)
    db = tmp_path / "ocop.db"
    ws = Workspace(tmp_path, f"sqlite:///{db}{options}")  # options: a URL sqlite_path declines
    old = os.umask(0o022)
    try:
        ws.run("init", check=True)
        ws.run("--as", "lan", "dossier", "list", check=True)
        reader = sqlite3.connect(db)  # while a connection is open, the WAL files exist
        try:
            reader.execute("SELECT count(*) FROM dossier").fetchone()
            for path in (db, db.with_name("ocop.db-wal"), db.with_name("ocop.db-shm")):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        finally:
            reader.close()
    finally:
        os.umask(old)


def test_ocop_init_warns_of_a_sqlite_file_other_logins_can_read(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    (ws.root / "ocop.db").chmod(0o644)
    done = ws.run("init")
    assert done.code == 0, done
    assert "readable by other logins" in done.stderr and "chmod 600" in done.stderr, done


def test_the_file_channel_creates_its_outbox_readable_by_owner_and_group_only(
    tmp_path: Path,
) -> None:
    """The outbox file holds every message's body (dossiers, deadlines, addresses) and the
    audit checkpoints: created ``0644`` under the usual umask, any login could read what the
    policy lets only some people see. It is created ``0640``, as stored documents are."""
    import os
    import stat

    from sqlmodel import SQLModel
    from test_notify import T0, add, deliver_pending

    from ocop_workflow.channels import FileChannel
    from ocop_workflow.config import NotificationsConfig
    from ocop_workflow.store import Store

    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    try:
        SQLModel.metadata.create_all(store.engine)
        add(store)
        path = tmp_path / "outbox.jsonl"
        config = NotificationsConfig(channels=("file",), settings={"file": FileChannel(path)})
        old = os.umask(0o022)
        try:
            deliver_pending(store, config, T0, env={})
        finally:
            os.umask(old)
    finally:
        store.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# --- a rehearsal switch left on in production ---------------------------------------------------


def test_serve_warns_when_every_client_may_date_its_acts(sqlite_workspace: Workspace) -> None:
    """With ``[clock] allow_override`` on, any token holder dates what it does with
    ``X-Ocop-Now`` (an audit entry "at" any instant): fine for a rehearsal, a forgery tool on a
    province's server. Nothing said so when the server started."""
    import httpx
    from conftest import serving

    with serving(sqlite_workspace) as server:
        assert server.process.stderr is not None
        # an answer means the announcement is over (it comes before the server runs)
        assert httpx.get(f"{server.url}/healthz", timeout=30).status_code == 200
        server.stop()
        warning = server.process.stderr.read()
    assert warning.startswith("warning: [clock] allow_override is on"), warning
    assert "X-Ocop-Now" in warning, warning


# --- official numbers: recorded by who issues the certificate -----------------------------------

CERTIFICATE = {"certificate_no": "OCOP-GL-2026-999", "decision_no": "999/QĐ-UBND"}


def test_a_producer_cannot_write_its_own_certificate_and_decision_numbers(
    both_api: Any,
) -> None:
    """``certificate_no`` and ``decision_no`` are what the ``certify`` guard checks: a producer
    who set them at registration (or with any trigger it may fire) satisfied that guard with
    numbers of its own choosing, and a certifying officer who did not retype them issued the
    certificate under the producer's numbers. They are recorded with the transition that
    issues the certificate, or by a records migration."""
    api = both_api
    body = {"product": "Cà phê", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"}
    api.token("htx_iale"), api.token("lan")  # their tokens' rows first
    before = dump_database(api.url)
    for user in ("htx_iale", "lan"):
        made = api.post("/api/v1/dossiers", user, json={**body, "data": CERTIFICATE})
        assert made.status_code == 403, made.text
        assert "certificate_no" in made.json()["error"]["message"]
    assert dump_database(api.url) == before
    dossier = api.register(user="htx_iale")["id"]
    moved = api.post(
        f"/api/v1/dossiers/{dossier}/advance",
        "htx_iale",
        json={"trigger": "withdraw", "reason": "thử", "data": {"decision_no": "1/QĐ"}},
    )
    assert moved.status_code == 403, moved.text
    assert "decision_no" in moved.json()["error"]["message"]
    shown = api.get(f"/api/v1/dossiers/{dossier}", "lan").json()
    assert shown["state"] == "registration" and "decision_no" not in shown["data"]
    # other fields stay the producer's to give
    noted = api.post(
        f"/api/v1/dossiers/{dossier}/advance",
        "htx_iale",
        json={"trigger": "withdraw", "reason": "thử", "data": {"note": "Rút để làm lại"}},
    )
    assert noted.status_code == 200, noted.text


# --- no token at all: an upload is not read before its sender is known ------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/dossiers/OCOP-2026-0001/documents",
        "/api/v1/dossiers//documents",  # the router's path converter takes an empty id too
        "/api/v1/imports",
        "/api/v1/audit/verify",
    ],
)
def test_an_upload_without_a_valid_token_is_401_before_its_body_is_read(
    server_api: Any, path: str
) -> None:
    """Under the upload limit (50 MiB by default), the framework spooled a multipart body to
    the server's disk before the token was looked at: anonymous clients, each sending a few
    files just under the limit at once, could fill the disk. Uploads, imports and checkpoints
    are now answered 401 without reading a byte of a declared body when the sender is unknown
    (a chunked one is read and dropped in memory, for the 413 past the limit)."""
    api = server_api
    api.register()
    size = len(b"".join(_upload()))
    for headers in ({}, {"Authorization": "Bearer ocop_made_up"}):
        started: list[bool] = []

        def body(started: list[bool] = started) -> Iterator[bytes]:
            started.append(True)
            yield from _upload()

        answer = api.client.post(
            path,
            content=body(),
            headers={
                "Content-Type": "multipart/form-data; boundary=b",
                "Content-Length": str(size),
                **headers,
            },
        )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthenticated"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert started == [], "the body was read before the sender was known"
        chunked = api.client.post(
            path,
            content=_upload(),
            headers={"Content-Type": "multipart/form-data; boundary=b", **headers},
        )
        assert chunked.status_code == 401, chunked.text
    # a known sender's body is read as before (the endpoint then judges it)
    known = api.client.post(
        path,
        content=b"".join(_upload()),
        headers={"Content-Type": "multipart/form-data; boundary=b", **api.h("lan")},
    )
    assert known.status_code not in (401, 500), known.text


def _upload() -> Iterator[bytes]:
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    for _ in range(100):
        yield b"x" * 10_000
    yield b"\r\n--b--\r\n"


def test_ocop_init_warns_of_a_wal_file_other_logins_can_read_beside_a_private_database(
    tmp_path: Path,
) -> None:
    """The WAL holds the latest writes: a database chmod 600 as the warning advised, its
    ``-wal`` left 0644 by a process running meanwhile, was not warned of."""
    from ocop_workflow.migrate import exposed_sqlite_file
    from ocop_workflow.store import Store

    db = tmp_path / "ocop db.db"
    db.touch(0o600)
    wal = tmp_path / "ocop db.db-wal"
    wal.touch(0o644)
    wal.chmod(0o644)
    said = exposed_sqlite_file(Store(f"sqlite:///{db}"))
    assert said is not None and "ocop db.db-wal (mode 0644)" in said, said
    import shlex

    assert said.endswith(f"chmod 600 {shlex.quote(str(wal))}"), said  # a path one can paste
    wal.chmod(0o600)
    assert exposed_sqlite_file(Store(f"sqlite:///{db}")) is None
