"""A hostile review: what an outsider's values do at every edge nobody wrote down.

Each test is one way in that an attacker (or a careless user) could use, and the behaviour the
office relies on: a one-line error with the documented exit code and the database exactly as it
was — never a traceback, never a hang, never a rule walked around.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Workspace, dump_database
from test_rule_migration import MIGRATE, NOW, on_148

PLAN_HEAD = '[plan]\nfrom = "ocop-148"\nto = "ocop-1489"\n'


def _plan(ws: Workspace, body: str, name: str = "plan.toml") -> Path:
    path = ws.root / name
    path.write_text(PLAN_HEAD + body, encoding="utf-8")
    return path


# --- workflow migrate: a plan is a records change, never a shortcut through the cycle ---------


def test_a_migration_plan_cannot_certify_a_dossier_by_mapping_it_to_a_later_stage(
    workspace: Workspace,
) -> None:
    ws = workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea")])  # in business_plan
    plan = _plan(ws, '[states]\nbusiness_plan = "promotion"\n')
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 2, done
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: plan ")
    assert "business_plan = 'promotion'" in done.stderr and "comes after" in done.stderr
    assert dump_database(ws.url) == before
    # back to an earlier stage is allowed: the dossier passes those checks again
    back = _plan(ws, '[states]\nbusiness_plan = "registration"\n', "back.toml")
    again = ws.run(*MIGRATE, "--plan", str(back), "--dry-run", user="hung", now=NOW)
    assert again.code == 0, again


def test_a_migration_plan_cannot_finish_a_dossier_by_mapping_it_to_a_final_state(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea"), ("dung", "approve_plan")])
    plan = _plan(ws, '[states]\nproduction = "closed"\n')
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 2, done
    assert "production = 'closed'" in done.stderr and "final" in done.stderr
    assert dump_database(ws.url) == before


def test_a_migration_plan_cannot_turn_a_producers_field_into_a_protected_one(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    plan = _plan(ws, 'same_names = true\n[fields]\nrename = { note = "stars" }\n')
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 2, done
    assert "protected" in done.stderr


def test_a_migration_refuses_a_value_the_new_rules_would_refuse(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    dossier = on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    plan = _plan(ws, 'same_names = true\n[fields]\nrename = { note = "producer_email" }\n')
    ws.run(
        "dossier",
        "advance",
        dossier,
        "approve_plan",
        "--set",
        "note=không phải email",
        user="dung",
        now="2025-05-06T09:00:00+07:00",
        check=True,
    )
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(plan), user="hung", now=NOW)
    assert done.code == 4, done
    assert "producer_email" in done.stderr and "e-mail" in done.stderr
    assert dump_database(ws.url) == before


# --- files a user names: never a hang, never the memory, never a traceback ---------------------


def _odd_file(path: Path, kind: str, deep: str) -> threading.Timer | None:
    """``path`` made into a FIFO, a symlink to /dev/zero, or ``deep`` (a nested document)."""
    if kind == "fifo":
        os.mkfifo(path)
        # a safety net: if the command opened the FIFO to read, unblock it after 10 s
        opener = threading.Timer(10, lambda: os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK)))
        opener.daemon = True
        opener.start()
        return opener
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text(deep, encoding="utf-8")
    return None


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep"])
def test_a_migration_plan_that_is_no_file_or_nested_too_deep_is_a_usage_error(
    kind: str, sqlite_workspace: Workspace
) -> None:
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    path = ws.root / "odd.toml"
    opener = _odd_file(path, kind, PLAN_HEAD + "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    before = dump_database(ws.url)
    done = ws.run(*MIGRATE, "--plan", str(path), user="hung", now=NOW)
    if opener is not None:
        opener.cancel()
    assert done.code == 2, done
    assert done.stderr.startswith("error: plan ") and done.stderr.count("\n") == 1, done
    assert "unexpected" not in done.stderr
    assert dump_database(ws.url) == before


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep"])
def test_a_config_that_is_no_file_or_nested_too_deep_is_a_config_error(
    kind: str, sqlite_workspace: Workspace
) -> None:
    ws = sqlite_workspace
    path = ws.root / "odd-config.toml"
    opener = _odd_file(path, kind, "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    done = ws.run("dossier", "list", OCOP_CONFIG=str(path))
    if opener is not None:
        opener.cancel()
    assert done.code == 1, done
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
    assert "unexpected" not in done.stderr


def test_a_workflow_file_nested_too_deep_holds_only_itself(sqlite_workspace: Workspace) -> None:
    import shutil

    from conftest import WORKFLOWS

    ws = sqlite_workspace
    own = ws.root / "workflows"
    shutil.copytree(WORKFLOWS, own)
    ws.config.write_text(
        ws.config.read_text("utf-8").replace(str(WORKFLOWS), str(own)), encoding="utf-8"
    )
    (own / "ocop-148.toml").write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    listed = ws.run("dossier", "list", "--json")
    assert listed.code == 0, listed
    registered = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        user="lan",
        now="2026-03-02T09:00:00+07:00",
    )
    assert registered.code == 0, registered
    broken = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--workflow",
        "ocop-148",
        user="lan",
    )
    assert broken.code == 1 and "nested too deep" in broken.stderr, broken


# --- the server: who you are never depends on what the request says -------------------------


@pytest.fixture
def server_api(tmp_path: Path, sqlite_url: str):  # type: ignore[no-untyped-def]
    from test_server import make_api

    made = make_api(tmp_path, sqlite_url)  # [clock] allow_override = true: a rehearsal server
    try:
        yield made
    finally:
        made.ocop.store.dispose()


def test_the_rehearsal_header_cannot_revive_an_expired_token(server_api) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from test_server import NOW

    api = server_api
    expired = api.ocop.at(_fixed(NOW - timedelta(days=3))).create_token("lan", expires_days=1)
    response = api.client.get(
        "/api/v1/me",
        headers={
            "Authorization": f"Bearer {expired.token}",
            "X-Ocop-Now": (NOW - timedelta(days=3)).isoformat(),
        },
    )
    assert response.status_code == 401, response.text


def test_the_rehearsal_header_cannot_step_around_login_throttling(server_api) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from test_server import NOW

    api = server_api
    api.ocop.set_password("lan", "mật khẩu đủ dài")
    for minute in range(8):  # a guesser sending a new instant with every try
        api.client.post(
            "/api/v1/login",
            json={"user": "lan", "password": f"đoán thử {minute}"},
            headers={"X-Ocop-Now": (NOW + timedelta(hours=minute)).isoformat()},
        )
    right = api.client.post(
        "/api/v1/login",
        json={"user": "lan", "password": "mật khẩu đủ dài"},
        headers={"X-Ocop-Now": (NOW + timedelta(hours=9)).isoformat()},
    )
    assert right.status_code == 429, right.text


def test_the_rehearsal_header_cannot_make_a_session_outlive_its_hours(server_api) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta

    from test_server import NOW

    api = server_api
    api.ocop.set_password("lan", "mật khẩu đủ dài")
    response = api.client.post(
        "/api/v1/login",
        json={"user": "lan", "password": "mật khẩu đủ dài"},
        headers={"X-Ocop-Now": "2099-01-01T09:00+07:00"},
    )
    assert response.status_code == 200, response.text
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert expires <= NOW + timedelta(hours=api.ocop.config.server.session_hours)


def _fixed(instant):  # type: ignore[no-untyped-def]
    from ocop_workflow.clock import FixedClock

    return FixedClock(instant)


def _raw_client(api):  # type: ignore[no-untyped-def]
    """A client that answers 500 as a server would (instead of raising the server's error)."""
    from fastapi.testclient import TestClient

    from ocop_workflow.server import create_app

    return TestClient(create_app(api.ocop), raise_server_exceptions=False)


def test_every_error_of_the_api_has_the_error_body_even_from_the_framework(server_api) -> None:  # type: ignore[no-untyped-def]
    client = _raw_client(server_api)
    deep = '{"product": ' + "[" * 20_000 + "]" * 20_000 + "}"
    for response, status in (
        (client.get("/api/v1/no-such-thing"), 404),
        (client.delete("/api/v1/dossiers"), 405),
        (
            client.post(
                "/api/v1/dossiers",
                content=deep,
                headers={"Content-Type": "application/json", **server_api.h("lan")},
            ),
            422,
        ),
    ):
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), error


def test_a_year_out_of_range_is_422_not_a_server_error(server_api) -> None:  # type: ignore[no-untyped-def]
    client = _raw_client(server_api)
    for year in ("99999999999999999999", "-5", "10000"):
        response = client.get(f"/api/v1/reports/progress?year={year}", headers=server_api.h("hung"))
        assert response.status_code == 422, (year, response.text)
        assert response.json()["error"]["code"] == "usage"


def test_a_streamed_upload_over_the_limit_is_413_before_anyone_is_asked_who_they_are(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Without a Content-Length the body was read whole (spooled to disk) before the token was
    even looked at: an anonymous client could fill the server's disk."""
    from test_server import make_api

    api = make_api(tmp_path, sqlite_url, extra="[documents]\nmax_bytes = 100000\n")
    try:
        dossier = api.register()

        def body():  # type: ignore[no-untyped-def]
            yield (
                b'--b\r\nContent-Disposition: form-data; name="kind"\r\n\r\nbusiness_plan\r\n'
                b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
            )
            for _ in range(100):
                yield b"x" * 10_000
            yield b"\r\n--b--\r\n"

        client = _raw_client(api)
        for headers in ({}, api.h("lan")):
            response = client.post(
                f"/api/v1/dossiers/{dossier['id']}/documents",
                content=body(),
                headers={"Content-Type": "multipart/form-data; boundary=b", **headers},
            )
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "too_large"
            assert "100,000 bytes" in response.json()["error"]["message"]
    finally:
        api.ocop.store.dispose()


def test_a_json_body_over_a_mebibyte_is_413_before_it_is_parsed(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A login, a registration or an advance is a few hundred bytes: before, any of them could
    carry up to the 50 MiB document limit, which the framework parsed as JSON before the caller
    was known — an anonymous ``POST /login`` made the server parse megabytes per request."""
    from test_server import make_api

    api = make_api(tmp_path, sqlite_url)
    try:
        padded = b'{"user": "lan", "password": "sai mat khau"}' + b" " * (1 << 20)
        client = _raw_client(api)
        for path, headers in (
            ("/api/v1/login", {}),
            ("/api/v1/dossiers", api.h("lan")),
            ("/api/v1/dossiers/OCOP-2026-0001/advance", api.h("lan")),
        ):
            for content in (padded, iter([padded[:1000], padded[1000:]])):  # declared, chunked
                response = client.post(
                    path, content=content, headers={"Content-Type": "application/json", **headers}
                )
                assert response.status_code == 413, (path, response.text)
                assert response.json()["error"] == {
                    "code": "too_large",
                    "message": "request larger than the limit of 1,048,576 bytes",
                }
        assert counted_failures(api) == 0  # the login was never attempted
        small = client.post(  # the same login under the limit: whitespace is still JSON
            "/api/v1/login", content=padded[:2000], headers={"Content-Type": "application/json"}
        )
        assert small.status_code == 401, small.text
    finally:
        api.ocop.store.dispose()


def counted_failures(api) -> int:  # type: ignore[no-untyped-def]
    from ocop_workflow.store import login_failure_t

    with api.ocop.store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(login_failure_t)).scalar())


def test_checkpoints_are_parsed_only_for_those_who_read_the_whole_trail(
    tmp_path: Path, sqlite_url: str
) -> None:
    """``POST /audit/verify`` may be as large as a document (a checkpoint holds every chain's
    head), so who is asking is settled before its body is read: a commune officer's megabytes
    of broken JSON are refused as 403, an auditor's are a 422 naming the JSON error, and an
    auditor's checkpoints padded past the small-body limit are still verified."""
    from test_server import NOW, make_api

    from ocop_workflow import checkpoint as cp

    api = make_api(tmp_path, sqlite_url, extra='[audit]\nsigning_key = "keys/audit.pem"\n')
    try:
        signing = api.ocop.config.audit.signing_key
        assert signing is not None
        cp.keygen(signing)
        api.register("lan")
        signed = cp.build(api.ocop.store, signing, NOW)
        public = cp.public_key_path(signing).read_text(encoding="utf-8")
        broken = b'{"checkpoints": [' + b" " * (2 << 20)
        client = _raw_client(api)
        json_type = {"Content-Type": "application/json"}
        officer = client.post(
            "/api/v1/audit/verify", content=broken, headers={**json_type, **api.h("lan")}
        )
        assert officer.status_code == 403, officer.text
        auditor = client.post(
            "/api/v1/audit/verify", content=broken, headers={**json_type, **api.h("auditor")}
        )
        assert auditor.status_code == 422, auditor.text
        elsewhere = client.post(
            "/api/v1/dossiers", content=broken[:40], headers={**json_type, **api.h("lan")}
        )  # the same mistake on another endpoint: the same kind of message
        for refused in (auditor, elsewhere):
            assert refused.json()["error"]["code"] == "usage"
            assert refused.json()["error"]["message"].startswith("body"), refused.text
        padded = json.dumps({"checkpoints": [signed], "public_key": public}).encode()
        padded += b" " * (2 << 20)
        verified = client.post(
            "/api/v1/audit/verify", content=padded, headers={**json_type, **api.h("auditor")}
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["ok"] is True and verified.json()["checkpoints"][0]["count"] == 1
    finally:
        api.ocop.store.dispose()


# --- the CLI through a server: the token never leaves in clear, the URL never in an error -------


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://cán-bộ:s3cret-pw@127.0.0.1:9", "credentials"),
        ("http://[::1", "not a URL"),
        ("ftp://127.0.0.1:9", "http"),
        ("http://ocop.tinh.example.invalid", "https"),
        ("http://127.0.0.1:notaport", "not a URL"),
    ],
)
def test_a_server_url_that_would_leak_or_cannot_work_is_a_config_error(
    url: str, said: str, tmp_path: Path
) -> None:
    from conftest import run_in_process

    env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
    env.update(OCOP_SERVER=url, OCOP_TOKEN="ocop_abc", OCOP_CONFIG=str(tmp_path / "none.toml"))
    done = run_in_process(["dossier", "list"], env, tmp_path)
    assert done.code == 1, done
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
    assert said in done.stderr and "unexpected" not in done.stderr, done
    assert "s3cret-pw" not in done.stderr + done.stdout


# --- secrets: every spelling a server may echo back ---------------------------------------------


@pytest.mark.parametrize(
    "echoed",
    [
        "auth failed for p%40ss%2fw0rd%2bX",  # lowercase percent-encoding
        "auth failed for p%40ss/w0rd%2BX",  # partly encoded
        '{"error": "bad token p@ss\\/w0rd+X"}',  # JSON escapes the slash
        '{"error": "bad token p\\u0040ss\\/w0rd\\u002bX"}',  # and may escape anything
        "535 AUTH AHUAcEBzcy93MHJk\r\n535 K1g=",  # an AUTH PLAIN blob cut across two lines
        "token p@ss/w0\r\n rd+X rejected",  # a folded header line
    ],
)
def test_a_secret_echoed_in_another_spelling_is_still_masked(echoed: str) -> None:
    from ocop_workflow.redact import MASK, Redactor

    redact = Redactor(["p@ss/w0rd+X"])
    shown = redact(echoed)
    assert MASK in shown, shown
    for fragment in ("w0rd", "w0\r\n rd", "K1g=", "%2fw0rd", "\\/w0rd"):
        assert fragment not in shown, shown


def test_a_json_body_of_the_wrong_types_is_422_and_writes_nothing(server_api) -> None:  # type: ignore[no-untyped-def]
    api = server_api
    dossier = api.register()
    api.token("chair")
    before = dump_database(api.url)
    for body in (
        {"trigger": "accept_idea", "expect_version": True},  # true is not version 1
        {"trigger": "accept_idea", "expect_versoin": 7},  # a typo must not skip the check
        {"trigger": "accept_idea", "expect_version": "1"},
        {"trigger": "accept_idea", "reason": 5},
        {"trigger": ["accept_idea"]},
    ):
        response = api.post(f"/api/v1/dossiers/{dossier['id']}/advance", "lan", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "usage"
    scored = api.post(
        f"/api/v1/dossiers/{dossier['id']}/scores",
        "chair",
        json={"member": "m1", "a": "5", "b": True, "c": 1},
    )
    assert scored.status_code == 422, scored.text
    assert dump_database(api.url) == before


# --- Vietnamese text in two Unicode spellings is one name --------------------------------------


def test_a_producer_name_typed_decomposed_is_the_same_producer(workspace: Workspace) -> None:
    """A Mac, a PDF or a phone may send "Cà phê" decomposed (NFD): the same name on screen, but
    another string. The producer could not see, nor act on, a dossier registered for it so."""
    import unicodedata

    ws = workspace
    decomposed = unicodedata.normalize("NFD", "HTX Cà phê Ia Le")
    product = unicodedata.normalize("NFD", "Cà phê bột")
    assert decomposed != "HTX Cà phê Ia Le"
    registered = ws.run(
        "dossier",
        "register",
        "--product",
        product,
        "--producer",
        decomposed,
        "--commune",
        "Ia Le",
        "--json",
        user="lan",
        now="2026-03-02T09:00:00+07:00",
    )
    assert registered.code == 0, registered
    dossier = registered.json()["id"]
    assert registered.json()["producer"] == "HTX Cà phê Ia Le"
    assert registered.json()["product"] == "Cà phê bột"
    listed = ws.run("dossier", "list", "--json", user="htx_iale").json()
    assert [d["id"] for d in listed] == [dossier]
    own = ws.run(
        "dossier",
        "register",
        "--product",
        "Mật ong",
        "--producer",
        decomposed,
        "--commune",
        "Ia Le",
        user="htx_iale",
        now="2026-03-02T09:00:00+07:00",
    )
    assert own.code == 0, own


# --- dossier ids: one id, whatever its case ----------------------------------------------------


def test_a_dossier_id_differing_only_by_case_is_taken(workspace: Workspace) -> None:
    """``iale-1`` beside ``IALE-1``: two dossiers an officer cannot tell apart on paper or by
    phone; ``ocop-2026-0002`` would pre-empt, in another case, the id the office gives next."""
    ws = workspace
    now = "2026-03-02T09:00:00+07:00"
    base = ("dossier", "register", "--producer", "HTX Cà phê Ia Le", "--commune", "Ia Le")
    ws.run(*base, "--product", "Cà phê", "--id", "IALE-1", user="lan", now=now, check=True)
    before = dump_database(ws.url)
    twin = ws.run(*base, "--product", "Giả", "--id", "iale-1", user="htx_iale", now=now)
    assert twin.code == 5, twin
    assert twin.stderr.count("\n") == 1 and "id iale-1 is taken" in twin.stderr
    assert "IALE-1" not in twin.stderr  # the stored spelling is not told
    ahead = ws.run(
        *base, "--product", "Mật ong", "--id", "ocop-2026-0002", user="htx_iale", now=now
    )
    assert ahead.code == 2, ahead
    assert "OCOP-2026-0002" in ahead.stderr
    assert dump_database(ws.url) == before
    rows = ws.root / "twins.csv"
    rows.write_text(
        "id,product,producer,commune\n"
        "IALE-9,Cà phê,HTX Cà phê Ia Le,Ia Le\n"
        "iale-9,Cà phê giả,HTX Cà phê Ia Le,Ia Le\n"
        "Iale-1,Cà phê giả,HTX Cà phê Ia Le,Ia Le\n",
        encoding="utf-8",
    )
    imported = ws.run("import", str(rows), user="lan", now=now)
    assert imported.code in (2, 5), imported
    assert (
        "line 2" in imported.stdout + imported.stderr or ":3:" in imported.stdout + imported.stderr
    )
    assert dump_database(ws.url) == before


def test_a_migration_reason_with_control_characters_is_refused(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    before = dump_database(ws.url)
    for reason in ("QĐ 1489\x1b[2J", "QĐ \u202e9841"):
        done = ws.run(
            *MIGRATE, "--plan", "ocop-148-to-ocop-1489", "--reason", reason, user="hung", now=NOW
        )
        assert done.code == 2, done
        assert done.stderr.count("\n") == 1 and "--reason" in done.stderr
    assert dump_database(ws.url) == before


@pytest.mark.parametrize("key", ["System", "lan\u202e", "a b", "", "x" * 200])
def test_a_user_key_that_could_pass_for_another_is_a_config_error(key: str, tmp_path: Path) -> None:
    """A [users] key is the audit trail's actor: "System" reads as the scheduler, a bidi
    override or a space makes one person's entries look like another's."""
    from conftest import run_in_process, write_config

    write_config(tmp_path, extra=f'[users."{key}"]\nname = "Ai đó"\nroles = ["auditor"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
    env.update(OCOP_CONFIG=str(tmp_path / "config.toml"))
    done = run_in_process(["dossier", "list"], env, tmp_path)
    assert done.code == 1, done
    assert done.stderr.startswith("error: config key 'users.") and done.stderr.count("\n") == 1


def test_a_token_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    from conftest import run_in_process

    token = tmp_path / "token"
    opener = _odd_file(token, "fifo", "")
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
    env.update(
        OCOP_SERVER="http://127.0.0.1:9",
        OCOP_TOKEN_FILE=str(token),
        OCOP_CONFIG=str(tmp_path / "none.toml"),
    )
    done = run_in_process(["dossier", "list"], env, tmp_path)
    if opener is not None:
        opener.cancel()
    assert done.code == 1, done
    assert "not a regular file" in done.stderr, done


# --- spreadsheets: a small file that is a big one ----------------------------------------------


def test_an_xlsx_that_unpacks_to_hundreds_of_megabytes_is_refused_before_it_is_read(
    sqlite_workspace: Workspace,
) -> None:
    """An XLSX is a zip: 300 KB can unpack to 300 MB (openpyxl holds shared strings in memory
    even in read-only mode). The upload limit counts the zip, so the unpacked size is checked."""
    import zipfile

    from openpyxl import Workbook

    ws = sqlite_workspace
    path = ws.root / "bomb.xlsx"
    book = Workbook()
    book.active.append(["product", "producer", "commune"])
    book.active.append(["Cà phê", "HTX Cà phê Ia Le", "Ia Le"])
    book.save(path)
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z,
        z.open("xl/media/padding.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(300):
            member.write(bytes(1 << 20))
    assert path.stat().st_size < 2_000_000
    before = dump_database(ws.url)
    done = ws.run("import", str(path), user="lan", now="2026-03-02T09:00:00+07:00")
    assert done.code == 2, done
    assert "unpacks to" in done.stderr and done.stderr.count("\n") == 1, done
    assert dump_database(ws.url) == before


# --- the worker's checkpoint schedule: a file name is not a clock ------------------------------


def test_a_checkpoint_file_dated_in_the_future_does_not_stop_the_schedule(tmp_path: Path) -> None:
    """A rehearsal's checkpoint (named in 2030) or a planted file left in the folder made the
    worker think a checkpoint was just written — until 2030; an unparsable name made one due at
    every sweep."""
    from datetime import UTC, datetime

    from ocop_workflow.checkpoint import due, file_name

    now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    (tmp_path / file_name(datetime(2030, 1, 1, tzinfo=UTC))).write_text("{}")
    assert due(tmp_path, now, 24)
    (tmp_path / "checkpoint-zzz.json").write_text("{}")
    (tmp_path / file_name(datetime(2026, 3, 1, 20, 0, tzinfo=UTC))).write_text("{}")
    assert not due(tmp_path, now, 24)  # the real one, six hours ago, decides
    assert due(tmp_path, now, 4)


def test_a_migration_plan_cannot_overwrite_one_field_with_another(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    dossier = on_148(ws, "Cà phê bột", [("dung", "accept_idea")])
    ws.run(
        "dossier",
        "advance",
        dossier,
        "approve_plan",
        "--set",
        "note=ghi chú gốc",
        "--set",
        "producer_phone=0900000000",
        user="dung",
        now="2025-05-06T09:00:00+07:00",
        check=True,
    )
    before = dump_database(ws.url)
    both = _plan(
        ws,
        'same_names = true\n[fields]\nrename = { note = "producer_phone", '
        'decision_no = "producer_phone" }\n',
    )
    done = ws.run(*MIGRATE, "--plan", str(both), user="hung", now=NOW)
    assert done.code == 2 and "producer_phone" in done.stderr, done
    onto = _plan(
        ws, 'same_names = true\n[fields]\nrename = { note = "producer_phone" }\n', "onto.toml"
    )
    done = ws.run(*MIGRATE, "--plan", str(onto), user="hung", now=NOW)
    assert done.code == 4, done
    assert "producer_phone" in done.stderr and "already" in done.stderr, done
    assert dump_database(ws.url) == before


# --- tokens made on the command line ------------------------------------------------------------


@pytest.mark.parametrize("days", ["99999999999", "1e400", "nan", "inf", "3650000"])
def test_a_token_expiry_out_of_range_is_a_usage_error(
    days: str, sqlite_workspace: Workspace
) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    done = ws.run("token", "create", "--user", "lan", "--expires", days)
    assert done.code == 2, done
    assert done.stderr.count("\n") == 1 and "--expires" in done.stderr, done
    assert dump_database(ws.url) == before


def test_a_token_label_with_control_characters_and_a_huge_token_id_are_refused_in_one_line(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    before = dump_database(ws.url)
    labelled = ws.run("token", "create", "--user", "lan", "--label", "máy\x1b[31m của Lan")
    assert labelled.code == 2 and labelled.stderr.count("\n") == 1, labelled
    revoked = ws.run("token", "revoke", "99999999999999999999")
    assert revoked.code == 3 and "unexpected" not in revoked.stderr, revoked
    assert dump_database(ws.url) == before


def test_token_times_print_in_the_business_time_zone_like_every_other_time(
    sqlite_workspace: Workspace,
) -> None:
    """`token create` and `token list` print local minutes (Asia/Ho_Chi_Minh), as `dossier
    show` does; JSON gives the same instants in that zone with its offset, as every JSON time
    (interface: "stored in UTC, shown in [engine] timezone")."""
    ws = sqlite_workspace
    now = "2026-03-02T09:00:00+07:00"  # 02:00 UTC
    made = ws.run("token", "create", "--user", "lan", "--expires", "1", now=now)
    assert made.code == 0, made
    assert "expires 2026-03-03 09:00:" in made.stderr, made
    listed = ws.run("token", "list", "--user", "lan", now=now)
    assert "2026-03-02 09:00  2026-03-03 09:00" in listed.stdout, listed
    document = ws.run("token", "list", "--json", now=now)
    assert document.json()[0]["created_at"] == "2026-03-02T09:00:00+07:00", document
    assert document.json()[0]["expires_at"] == "2026-03-03T09:00:00+07:00", document


@pytest.mark.parametrize("name", ["Ngày\\u202e lễ", "Ngày\\u007f lễ", "Ngày\\u0085 lễ"])
def test_a_local_calendar_day_named_with_invisible_controls_is_a_config_error(
    name: str, tmp_path: Path
) -> None:
    """The name shows in every deadline explanation and ``calendar show``: a bidi override
    makes it read as something else, C1 and DEL characters break spreadsheets."""
    from conftest import run_in_process, write_config

    write_config(
        tmp_path,
        extra=f'[[calendar.days]]\ndate = 2026-04-03\nstatus = "off"\nname = "{name}"\n'
        'source = "Quyết định của UBND tỉnh"\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
    env.update(OCOP_CONFIG=str(tmp_path / "config.toml"))
    done = run_in_process(["calendar", "show", "--year", "2026"], env, tmp_path)
    assert done.code == 1, done
    assert done.stderr.startswith("error: config key 'calendar.days[0]'"), done
    assert done.stderr.count("\n") == 1


# --- workflow files: a field may not take the engine's own keys --------------------------------


@pytest.mark.parametrize("name", ["documents", "scoring", '"a b"', '"x.y"', '"Sao"'])
def test_a_workflow_field_named_like_the_engines_own_data_or_no_name_is_refused(
    name: str, sqlite_workspace: Workspace
) -> None:
    """``[fields.documents]`` would let ``--set documents=x`` replace the attached documents'
    record with a text (every later read of the dossier fails); a field name must be a plain
    name, since it is typed as ``--set NAME=…`` and a spreadsheet column."""
    from conftest import WORKFLOWS

    ws = sqlite_workspace
    text = (WORKFLOWS / "ocop-1489.toml").read_text(encoding="utf-8")
    path = ws.root / "ocop-1489.toml"
    path.write_text(text + f'\n[fields.{name}]\nlabel = "x"\n', encoding="utf-8")
    done = ws.run("workflow", "validate", str(path))
    assert done.code == 1, done
    shown = name.strip('"')
    assert f"fields.{shown}" in done.stdout + done.stderr, done


def test_an_import_whose_data_column_is_nested_too_deep_is_a_bad_row(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    rows = ws.root / "deep.csv"
    deep = "[" * 60_000 + "]" * 60_000
    rows.write_text(
        f"product,producer,commune,data\nCà phê,HTX Cà phê Ia Le,Ia Le,{deep}\n", encoding="utf-8"
    )
    before = dump_database(ws.url)
    done = ws.run("import", str(rows), user="lan", now="2026-03-02T09:00:00+07:00")
    assert done.code == 2, done
    assert "unexpected" not in done.stderr and "data column" in done.stdout + done.stderr, done
    assert dump_database(ws.url) == before


# --- audit verify: whatever an intruder wrote, it is reported, never a crash ---------------------


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[1, 2]",
        '{"documents": "x"}',
        '{"documents": [1, {"kind": 5}]}',
        '{"a": ' + "[" * 60_000 + "]" * 60_000 + "}",
    ],
)
def test_audit_verify_reports_a_dossier_whose_data_an_intruder_mangled(
    data: str, sqlite_workspace: Workspace
) -> None:
    import sqlalchemy as sa

    ws = sqlite_workspace
    now = "2026-03-02T09:00:00+07:00"
    base = ("dossier", "register", "--producer", "HTX Cà phê Ia Le", "--commune", "Ia Le")
    dossier = ws.run(*base, "--product", "Cà phê", "--json", user="lan", now=now).json()["id"]
    engine = sa.create_engine(ws.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE dossier SET data = :d WHERE id = :i"), {"d": data, "i": dossier}
        )
    engine.dispose()
    done = ws.run("audit", "verify")
    assert done.code == 7, done
    assert "unexpected" not in done.stderr and dossier in done.stderr, done


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_on_a_port_out_of_range_is_a_usage_error(
    port: str, sqlite_workspace: Workspace
) -> None:
    done = sqlite_workspace.run("serve", "--port", port)
    assert done.code == 2, done
    assert done.stderr.startswith("error: ") and "unexpected" not in done.stderr, done


def test_a_file_in_the_working_folder_does_not_shadow_a_shipped_plan(
    sqlite_workspace: Workspace,
) -> None:
    """``--plan ocop-148-to-ocop-1489`` names the plan shipped with ocop: a file of that name
    planted in the folder the officer runs from must not be used instead (``./NAME`` says a
    file)."""
    ws = sqlite_workspace
    on_148(ws, "Cà phê bột", [("dung", "accept_idea"), ("dung", "approve_plan")])
    planted = ws.root / "ocop-148-to-ocop-1489"
    planted.write_text(PLAN_HEAD + "same_names = true\n", encoding="utf-8")
    done = ws.run(*MIGRATE, "--plan", "ocop-148-to-ocop-1489", "--dry-run", user="hung", now=NOW)
    assert done.code == 0, done
    from hashlib import sha256

    assert done.json()["plan_sha256"] != sha256(planted.read_bytes()).hexdigest()
    local = ws.run(*MIGRATE, "--plan", "./ocop-148-to-ocop-1489", "--dry-run", user="hung", now=NOW)
    assert local.code == 0, local
    assert local.json()["plan_sha256"] == sha256(planted.read_bytes()).hexdigest()


def test_a_token_and_a_password_of_someone_removed_from_the_config_log_nobody_in(
    tmp_path: Path, sqlite_url: str
) -> None:
    """An officer who left: their [users] entry is deleted, the server restarted. Their token
    (still active in the database) and their password must open nothing."""
    from test_server import make_api

    first = make_api(tmp_path, sqlite_url)
    token = first.token("tuan")
    first.ocop.set_password("tuan", "mật khẩu của Tuấn")
    assert first.get("/api/v1/me", "tuan").status_code == 200
    first.ocop.store.dispose()
    config = (tmp_path / "config.toml").read_text(encoding="utf-8")
    start = config.index("[users.tuan]")
    end = config.index("[users.hung]")
    (tmp_path / "config.toml").write_text(config[:start] + config[end:], encoding="utf-8")
    from test_server import NOW

    from ocop_workflow.clock import FixedClock
    from ocop_workflow.config import load_config
    from ocop_workflow.server import create_app
    from ocop_workflow.service import Ocop

    config_now = load_config(tmp_path / "config.toml", {"OCOP_DATABASE_URL": sqlite_url})
    ocop = Ocop(config_now, FixedClock(NOW))
    try:
        from fastapi.testclient import TestClient

        client = TestClient(create_app(ocop))
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401, me.text
        login = client.post("/api/v1/login", json={"user": "tuan", "password": "mật khẩu của Tuấn"})
        assert login.status_code == 401, login.text
    finally:
        ocop.store.dispose()


def test_a_token_is_taken_only_from_the_authorization_header(server_api) -> None:  # type: ignore[no-untyped-def]
    """Not from the query string (it would end in proxy logs and browser history), nor from a
    cookie or a look-alike header; a Bearer with stray spaces still works, another scheme not."""
    api = server_api
    token = api.token("lan")
    for response in (
        api.client.get(f"/api/v1/me?token={token}"),
        api.client.get(f"/api/v1/me?access_token={token}"),
        api.client.get("/api/v1/me", cookies={"token": token}),
        api.client.get("/api/v1/me", headers={"X-Authorization": f"Bearer {token}"}),
        api.client.get("/api/v1/me", headers={"Authorization": f"Token {token}"}),
        api.client.get("/api/v1/me", headers={"Authorization": token}),
        api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token[:-1]}"}),
    ):
        assert response.status_code == 401, response.request.url
    spaced = api.client.get("/api/v1/me", headers={"Authorization": f"bearer   {token}  "})
    assert spaced.status_code == 200 and spaced.json()["key"] == "lan"


# --- what a remote server answers is data, never terminal commands ------------------------------


def test_a_webhook_answering_terminal_escapes_has_them_shown_escaped(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A compromised receiver (or anyone in the middle of plain http) chooses the reason
    phrase that becomes ``last_error``; an officer's ``notifications list`` must not let it
    clear the screen, retitle the terminal or reverse the text that follows."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from test_redaction import workspace_with

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400, "Bad\x1b[2J\x1b]0;pwned\x07 \x9b2J")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        ws = workspace_with(
            tmp_path, sqlite_url, '["webhook"]', f'[notifications.webhook]\nurl = "{url}"\n'
        )
        swept = ws.run("sweep", "--json", now="2026-03-02T09:00:00+07:00")
        assert swept.code == 0, swept
    finally:
        server.shutdown()
        server.server_close()
    for args in (("notifications", "list", "--json"), ("notifications", "list")):
        listed = ws.run(*args, now="2026-03-02T09:00:00+07:00")
        assert listed.code == 0 and ("400" in listed.stdout or "--json" not in args), listed
        for raw in ("\x1b", "\x07", "\x9b"):
            assert raw not in listed.stdout + listed.stderr, (raw, listed)


def test_the_database_itself_refuses_a_second_id_differing_only_by_case(
    workspace: Workspace,
) -> None:
    """Two registrations at the same instant both pass the application's check; the unique
    index on lower(id) (migration 0006) refuses the second."""
    import sqlalchemy as sa

    from ocop_workflow.store import dossier_t

    ws = workspace
    base = ("dossier", "register", "--producer", "HTX Cà phê Ia Le", "--commune", "Ia Le")
    ws.run(*base, "--product", "Cà phê", "--id", "IALE-1", user="lan", check=True)
    engine = sa.create_engine(ws.url)
    try:
        with engine.connect() as conn:
            row = dict(conn.execute(sa.select(dossier_t)).one()._mapping)
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(dossier_t.insert(), [{**row, "id": "iale-1"}])
    finally:
        engine.dispose()


def test_set_password_from_an_endless_stdin_stops_at_the_limit(sqlite_workspace: Workspace) -> None:
    """``ocop user set-password lan < /dev/zero`` read one "line" forever (no newline ever
    comes): the memory of the machine was the limit. Run with 300 MB of address space."""
    import resource
    import subprocess
    import sys

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (300 << 20, 300 << 20))

    ws = sqlite_workspace
    with open("/dev/zero", "rb") as zero:
        done = subprocess.run(
            [sys.executable, "-m", "ocop_workflow", "user", "set-password", "lan"],
            stdin=zero,
            capture_output=True,
            text=True,
            env=ws.env(),
            cwd=ws.root,
            timeout=60,
            preexec_fn=limit_memory,
        )
    assert done.returncode == 2, done
    assert "too long" in done.stderr and "unexpected" not in done.stderr, done
