"""One real ``ocop serve`` process, and the command line acting through it with a token only.

The officer's side runs in a folder with no config file and no database URL in its environment:
everything it does goes through HTTP as the owner of its token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Result, Workspace, run_ocop, serving


@dataclass
class Served:
    ws: Workspace
    url: str
    process: subprocess.Popen[str]
    officer: Path

    def token(self, user: str, *extra: str) -> str:
        made = self.ws.run("token", "create", "--user", user, *extra, check=True)
        return made.stdout.strip()

    def cli(
        self, *args: str, token: str | None = None, process: bool | None = None, **env: str
    ) -> Result:
        """``ocop ARGS`` on an officer's machine: a server URL and a token, nothing else. The
        command runs in this process (the environment exactly that) unless ``process``: the
        server is the real process here, and the first tests below run the command as one too."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
        base["OCOP_SERVER"] = self.url
        if token is not None:
            base["OCOP_TOKEN"] = token
        base.update(env)
        return run_ocop(list(args), base, self.officer, process=process)


@pytest.fixture
def served(workspace: Workspace, tmp_path: Path) -> Iterator[Served]:
    with serving(workspace, OCOP_NOW="2026-03-02T09:00+07:00") as server:
        officer = tmp_path / "officer"
        officer.mkdir()
        yield Served(workspace, server.url, server.process, officer)


def test_the_cli_registers_and_advances_through_the_server_with_only_a_token(
    served: Served,
) -> None:
    token = served.token("lan")
    registered = served.cli(
        "dossier", "register", "--product", "Cà phê bột", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", token=token, process=True,
    )  # fmt: skip
    assert registered.code == 0, registered
    dossier = registered.json()["id"]
    assert registered.json()["state_entered_at"].startswith("2026-03-02T09:0")  # rehearsal
    moved = served.cli(
        "dossier", "advance", dossier, "accept_idea", "--expect-version", "1", "--json",
        token=token, process=True,
    )  # fmt: skip
    assert moved.code == 0, moved
    assert moved.json()["actor"] == "lan"
    shown = served.cli("dossier", "show", dossier, token=token)
    assert shown.code == 0, shown
    assert "business_plan" in shown.stdout
    # the database the server holds says the same
    history = served.ws.run("dossier", "history", dossier, "--json", check=True).json()
    assert [(e["trigger"], e["actor"]) for e in history] == [
        ("register", "lan"),
        ("accept_idea", "lan"),
    ]


def test_through_the_server_errors_keep_their_exit_codes(served: Served) -> None:
    token = served.token("lan")
    missing = served.cli(
        "dossier", "advance", "OCOP-1999-0001", "accept_idea", token=token, process=True
    )
    assert missing.code == 3, missing
    assert missing.stderr.startswith("error: dossier OCOP-1999-0001 not found")
    nobody = served.cli("dossier", "list", token="ocop_forged", process=True)
    assert nobody.code == 6, nobody
    assert "invalid or expired token" in nobody.stderr
    # the server names the inputs at fault; the command line through it names their options
    typo = served.cli("dossier", "list", "--commune", "Ia le", token=token)
    assert typo.code == 3, typo
    assert typo.stderr.endswith("(did you mean 'Ia Le'?) — option --commune\n"), typo


def test_a_command_only_the_database_can_do_is_refused_on_an_officers_machine_as_such(
    served: Served,
) -> None:
    """Through a server, ``token``, ``sweep``, ``audit export`` and ``init`` work on the database
    itself: on an officer's machine (no config file, or one with only ``[client]``) each says
    to run it where the database is (exit 1), and none leaves a database of its own behind —
    rather than "run `ocop init`", which would make the officer an empty one."""
    token = served.token("lan")
    for config in (None, '[client]\nurl = "' + served.url + '"\n'):
        if config is not None:
            (served.officer / "config.toml").write_text(config, encoding="utf-8")
        for args in (("token", "list"), ("sweep",), ("audit", "export"), ("init",)):
            refused = served.cli(*args, token=token)
            assert refused.code == 1, refused
            assert "works on the database itself" in refused.stderr, refused
            assert "ocop init" not in refused.stderr, refused
        assert sorted(p.name for p in served.officer.iterdir()) == (
            [] if config is None else ["config.toml"]
        )
        # a command that never opens the database still works there
        checked = served.cli("workflow", "validate", str(ROOT / "workflows" / "ocop-1489.toml"))
        assert checked.code == 0, checked


def test_a_plain_http_server_on_this_machine_is_never_reached_through_a_proxy(
    served: Served,
) -> None:
    """Plain ``http://`` is allowed only to this machine: an office's ``http_proxy`` in the
    environment must not receive the request, whose bearer token would cross its network in
    clear. A real listening socket stands in for the proxy and records what reaches it."""
    import socket
    import threading

    heard: list[bytes] = []
    proxy = socket.create_server(("127.0.0.1", 0))
    port = proxy.getsockname()[1]

    def listen() -> None:
        proxy.settimeout(5)
        with suppress(OSError), proxy:
            conn, _ = proxy.accept()
            with conn:
                heard.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    token = served.token("lan")
    via = f"http://127.0.0.1:{port}"
    for server in (served.url, served.url.replace("http://", "HTTP://")):
        listed = served.cli("dossier", "list", "--json", token=token, http_proxy=via,
                            HTTP_PROXY=via, ALL_PROXY=via, NO_PROXY="",
                            OCOP_SERVER=server)  # fmt: skip
        assert listed.code == 0, listed
    with socket.create_connection(("127.0.0.1", port)):  # end the listener's wait
        pass
    listener.join(10)
    assert not any(token.encode() in request for request in heard), heard


@contextmanager
def _impostor(answers: list[tuple[int, bytes]]) -> Iterator[dict[str, str]]:
    """A real HTTP server on this machine that is not ocop's: each request gets the first of
    ``answers`` (status, body), and the environment of an officer pointed at it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Impostor(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            status, body = answers[0]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCOP_")}
        yield env | {"OCOP_SERVER": f"http://127.0.0.1:{server.server_port}",
                     "OCOP_TOKEN": "ocop_" + "x" * 43}  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_answers_something_else_than_the_api_is_said_so(tmp_path: Path) -> None:
    """``OCOP_SERVER`` naming another program (a captive portal's page, a web server) that
    answers 200 with HTML or with JSON of another shape: exit 1 saying so, not a Python error
    about a ``NoneType``."""
    answers = [(200, b"<html>Welcome to the hotel network</html>"), (200, b'"just a string"')]
    with _impostor(answers) as env:
        for _ in range(2):
            shown = run_ocop(["dossier", "list"], env, tmp_path)
            assert shown.code == 1, shown
            assert "not the API's JSON" in shown.stderr, shown
            assert "TypeError" not in shown.stderr
            answers.pop(0)


def test_an_error_answer_is_told_with_what_the_terminal_would_act_on_escaped(
    tmp_path: Path,
) -> None:
    """An error body's message, fields, reasons and import report come from the server: an
    escape sequence in any of them is printed escaped, and a field, reason or problem that is
    not text is left out — never a Python error while the error is being told."""
    body = {
        "error": {"code": "conflict", "message": "taken \x1b[2J",
                  "fields": ["data.\x1b[31mred", 5], "reasons": [1, "r \x07"]},
        "report": {"problems": [1, "sheet.csv:2: \x1b]0;title\x07"]},
    }  # fmt: skip
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("product,producer,commune\nTrà,HTX,Ia Le\n", encoding="utf-8")
    with _impostor([(409, json.dumps(body).encode())]) as env:
        for args in (["dossier", "list"], ["import", str(sheet)]):
            told = run_ocop(args, env, tmp_path)
            assert told.code == 5, told
            assert "\x1b" not in told.stderr and "\x07" not in told.stderr, told
            assert "TypeError" not in told.stderr, told


def test_a_token_that_is_no_token_is_refused_without_being_repeated(served: Served) -> None:
    """A token with a control character (a pasted line break) or of another form is refused
    before anything is sent, and the error does not print it (the HTTP library's would)."""
    for bad in ("ocop_SECRETSECRET\nx", "Bearer ocop_SECRETSECRET", "SECRETSECRET"):
        refused = served.cli("dossier", "list", token=bad)
        assert refused.code == 6, refused
        assert "does not hold a token" in refused.stderr, refused
        assert "SECRETSECRET" not in refused.stderr + refused.stdout, refused


def test_an_id_holding_a_path_is_one_id_through_the_server(served: Served) -> None:
    """The id a command is given is one path segment of the request: ``ID/history`` or
    ``ID?x`` is an id no dossier has, never another endpoint of the API."""
    token = served.token("lan")
    dossier = served.cli(
        "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", token=token,
    ).json()["id"]  # fmt: skip
    for odd in (f"{dossier}/history", f"{dossier}?x=1", f"{dossier}#x"):
        shown = served.cli("dossier", "show", odd, "--json", token=token)
        assert shown.code in (2, 3), shown  # bad input, or no such dossier
        assert shown.stdout.strip() == "" or "error" in shown.json(), shown


def test_as_is_refused_through_the_server(served: Served) -> None:
    token = served.token("lan")
    for args, env in (
        (("--as", "hung", "dossier", "list"), {}),
        (("dossier", "list"), {"OCOP_USER": "hung"}),
    ):
        result = served.cli(*args, token=token, **env)
        assert result.code == 2, result
        assert "act as the owner of your token" in result.stderr


def test_a_token_file_others_can_read_is_refused(served: Served) -> None:
    token_file = served.officer / "token"
    token_file.write_text(served.token("lan") + "\n", encoding="utf-8")
    token_file.chmod(0o644)
    refused = served.cli("dossier", "list", OCOP_TOKEN_FILE=str(token_file))
    assert refused.code == 1, refused
    assert "readable by others" in refused.stderr
    token_file.chmod(0o600)
    allowed = served.cli("dossier", "list", "--json", OCOP_TOKEN_FILE=str(token_file))
    assert allowed.code == 0, allowed
    assert allowed.json() == []


def test_token_list_never_shows_a_token_and_revoke_takes_effect(served: Served) -> None:
    token = served.token("lan", "--expires", "30")
    listed = served.ws.run("token", "list", "--json", check=True)
    assert token not in listed.stdout
    (row,) = listed.json()
    assert (row["user"], row["status"]) == ("lan", "active")
    assert served.cli("dossier", "list", token=token).code == 0
    served.ws.run("token", "revoke", str(row["id"]), check=True)
    assert served.cli("dossier", "list", token=token).code == 6


def test_set_password_from_stdin_then_log_in_over_http(served: Served) -> None:
    import httpx

    done = subprocess.run(
        [sys.executable, "-m", "ocop_workflow", "user", "set-password", "lan"],
        input="một mật khẩu dài\n",
        capture_output=True,
        text=True,
        env=served.ws.env(),
        cwd=served.ws.root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # a first request may wait for the fresh server's imports and Argon2 on a loaded machine
    login = f"{served.url}/api/v1/login"
    wrong = httpx.post(login, json={"user": "lan", "password": "sai"}, timeout=60)
    assert wrong.status_code == 401
    right = httpx.post(login, json={"user": "lan", "password": "một mật khẩu dài"}, timeout=60)
    assert right.status_code == 200, right.text
    session = right.json()["token"]
    assert served.cli("dossier", "list", token=session).code == 0


def test_attach_and_import_through_the_server(served: Served) -> None:
    lan = served.token("lan")
    registered = served.cli(
        "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", token=lan,
    )  # fmt: skip
    dossier = registered.json()["id"]
    scan = served.officer / "phuong-an.pdf"
    scan.write_bytes("Phương án — bản scan".encode() * 1000)
    attached = served.cli("dossier", "attach", dossier, "business_plan", str(scan), "--json",
                          token=lan)  # fmt: skip
    assert attached.code == 0, attached
    assert (attached.json()["name"], attached.json()["by"]) == ("phuong-an.pdf", "lan")
    sheet = served.officer / "ho-so.csv"
    sheet.write_text(
        "product,producer,commune\nMật ong,HTX Cà phê Ia Le,Ia Le\nTrà,HTX Cà phê Ia Le,Ia Le\n",
        encoding="utf-8",
    )
    imported = served.cli("import", str(sheet), "--json", token=lan)
    assert imported.code == 0, imported
    assert imported.json()["imported"] == 2
    bad = served.officer / "sai.csv"
    bad.write_text("product,producer,commune\n,HTX Cà phê Ia Le,Ia Le\n", encoding="utf-8")
    refused = served.cli("import", str(bad), token=lan)
    assert refused.code == 2, refused
    # ids taken: exit 5, each problem on stderr, and with --json the report, as locally
    taken = served.officer / "trung.csv"
    taken.write_text(f"id,product,producer,commune\n{dossier},Mật ong,HTX Cà phê Ia Le,Ia Le\n")
    clash = served.cli("import", str(taken), "--json", token=lan)
    assert clash.code == 5, clash
    assert f"trung.csv:2: id {dossier} is taken" in clash.stderr, clash
    assert clash.json()["imported"] == 0 and len(clash.json()["problems"]) == 1
    listed = served.cli("dossier", "list", "--json", token=lan).json()
    assert len(listed) == 3


def test_audit_verify_with_a_checkpoint_goes_through_the_server(served: Served) -> None:
    """The auditor's machine holds the checkpoint and the public key, not the database: the
    files go to the server, which checks them; a chain cut after signing is exit 7, as locally."""
    from audit_support import drop_protection
    from test_checkpoint import roll_back_to

    from ocop_workflow import checkpoint as cp
    from ocop_workflow.store import Store

    lan = served.token("lan")
    registered = served.cli(
        "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", token=lan,
    )  # fmt: skip
    dossier = registered.json()["id"]
    assert served.cli("dossier", "advance", dossier, "accept_idea", token=lan).code == 0
    public = cp.keygen(served.ws.root / "keys" / "audit.pem")
    store = Store(served.ws.url)
    try:
        signed = cp.build(store, served.ws.root / "keys" / "audit.pem", datetime.now(UTC))
        cp.write(signed, served.officer / "cp.json")
        auditor = served.token("auditor")
        args = ("audit", "verify", "--checkpoint", "cp.json", "--public-key", str(public))
        sound = served.cli(*args, "--json", token=auditor)
        assert sound.code == 0, sound
        assert sound.json()["checkpoints"][0]["file"] == "cp.json"
        assert served.cli(*args, token=lan).code == 6  # reads only some dossiers
        drop_protection(served.ws.url)
        with store.write() as conn:
            roll_back_to(conn, dossier, 1)
    finally:
        store.dispose()
    assert served.cli("audit", "verify", token=auditor).code == 0  # the database alone: sound
    cut = served.cli(*args, token=auditor)
    assert cut.code == 7, cut
    assert f"{dossier} " in cut.stdout and "truncated" in cut.stdout, cut
    assert cut.stderr.startswith(
        f"error: audit verification failed: 1 problem(s), first in dossier {dossier}"
    )


def _file_named(workflow: dict[str, Any]) -> dict[str, Any]:
    """A workflow's document as the server gives it: its file's path cut to the file's name."""
    assert Path(workflow["file"]).is_absolute()
    return workflow | {"file": Path(workflow["file"]).name}


def test_workflow_commands_and_the_html_report_go_through_the_server(served: Served) -> None:
    """An officer without the database or the workflow files lists, shows and draws the
    server's workflows; ``workflow show`` counts only the dossiers the token's owner may see;
    the HTML report is the server's page, for those who read every dossier."""
    lan, tuan, hung = served.token("lan"), served.token("tuan"), served.token("hung")
    mine = served.cli(
        "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", token=lan,
    ).json()["id"]  # fmt: skip
    theirs = served.cli(
        "dossier", "register", "--product", "Hồ tiêu", "--producer", "HTX Ia Phang",
        "--commune", "Ia Phang", "--json", token=tuan,
    )  # fmt: skip
    assert theirs.code == 0, theirs

    listed = served.cli("workflow", "list", "--json", token=lan)
    assert listed.code == 0, listed
    # a workflow's file: from the server its name only, not where the server keeps it
    assert listed.json() == [
        _file_named(w) for w in served.ws.run("workflow", "list", "--json", check=True).json()
    ]
    shown = served.cli("workflow", "show", "ocop-1489", "--json", token=lan)
    assert shown.code == 0, shown
    assert (shown.json()["dossiers"], shown.json()["dossier_ids"]) == (1, [mine])
    everything = served.cli("workflow", "show", "ocop-1489", "--json", token=hung).json()
    assert everything["dossiers"] == 2
    # one shape (shapes.WorkflowDetail): through the server as from the database itself
    local = served.ws.run("workflow", "show", "ocop-1489", "--json", check=True).json()
    assert everything == _file_named(local)
    table = served.cli("workflow", "show", "ocop-1489", token=lan)
    assert "dossiers on ocop-1489: 1" in table.stdout, table
    drawn = served.cli("workflow", "diagram", "ocop-1489", token=lan)
    assert drawn.code == 0, drawn
    assert drawn.stdout == served.ws.run("workflow", "diagram", "ocop-1489", check=True).stdout
    dot = served.cli("workflow", "diagram", "ocop-1489", "--format", "dot", token=lan)
    assert dot.stdout.startswith("digraph"), dot
    missing = served.cli("workflow", "show", "ocop-9999", token=lan)
    assert missing.code == 3 and missing.stderr.startswith("error: "), missing
    # validate checks the officer's own files, on the officer's machine
    draft = served.officer / "draft.toml"
    draft.write_text((ROOT / "workflows" / "ocop-1489.toml").read_text("utf-8"), "utf-8")
    assert served.cli("workflow", "validate", str(draft), token=lan).code == 0
    draft.write_text("x = 1\n", encoding="utf-8")
    broken = served.cli("workflow", "validate", str(draft), "--json", token=lan)
    assert broken.code == 1 and broken.json()["ok"] is False, broken
    assert served.cli("workflow", "validate", token=lan).code == 2  # no folder here

    page = served.officer / "ocop-2026.html"
    done = served.cli("report", "html", "--year", "2026", "-o", str(page), token=hung)
    assert done.code == 0, done
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and mine in html
    refused = served.cli("report", "html", "--year", "2026", "-o", "lan.html", token=lan)
    assert refused.code == 6, refused
    assert not (served.officer / "lan.html").exists()


def test_the_officers_rehearsal_instant_travels_to_the_server(served: Served) -> None:
    token = served.token("lan")
    registered = served.cli(
        "dossier", "register", "--product", "Cà phê", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", token=token, OCOP_NOW="2026-05-04T10:30+07:00",
    )  # fmt: skip
    assert registered.code == 0, registered
    assert registered.json()["state_entered_at"].startswith("2026-05-04T10:30")


def test_two_worker_processes_share_the_port_and_stop_on_sigterm(
    sqlite_workspace: Workspace,
) -> None:
    import time

    import httpx

    ws = sqlite_workspace
    token = ws.run("token", "create", "--user", "lan", check=True).stdout.strip()
    with serving(ws, "--workers", "2") as server:
        assert "(2 workers)" in server.line, server.line
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            deadline = time.monotonic() + 60
            while True:  # the socket listens at once; the workers answer once they are up
                response = http.get("/api/v1/me", timeout=60)
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
            assert response.json()["key"] == "lan"
            assert http.get("/readyz").status_code == 200
        assert server.stop() == 0


def _serving_pid(local_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server end of the loopback connection from ``local_port``
    (Linux: /proc/net/tcp gives the socket's inode, /proc/PID/fd who holds it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == local_port:  # remote = our port
                    inodes.add(fields[9])
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    return None


def test_a_revoked_token_is_refused_at_once_by_every_server_process(workspace: Workspace) -> None:
    """Nothing caches a token: after ``ocop token revoke``, the very next request on each open
    keep-alive connection is 401, whichever of the two worker processes holds it."""
    import http.client
    import json
    import time

    ws = workspace
    token = ws.run("token", "create", "--user", "lan", check=True).stdout.strip()
    with serving(ws, "--workers", "2") as server:
        process = server.process
        host, port = server.url.removeprefix("http://").split(":")
        headers = {"Authorization": f"Bearer {token}"}

        def me(conn: http.client.HTTPConnection) -> int:
            conn.request("GET", "/api/v1/me", headers=headers)
            answer = conn.getresponse()
            answer.read()
            return answer.status

        children: list[int] = []
        held: dict[int, list[http.client.HTTPConnection]] = {}
        deadline = time.monotonic() + 60
        while len(held) < 2:  # connections until both worker processes hold some
            assert time.monotonic() < deadline, f"connections reached only {sorted(held)}"
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                status = me(conn)
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                time.sleep(0.1)
                continue
            assert status == 200
            children = [
                int(p) for p in Path(f"/proc/{process.pid}/task/{process.pid}/children")
                .read_text().split()
            ]  # fmt: skip
            pid = _serving_pid(conn.sock.getsockname()[1], children)
            assert pid is not None
            held.setdefault(pid, []).append(conn)
        listed = ws.run("token", "list", "--json", check=True).json()
        ws.run("token", "revoke", str(listed[0]["id"]), check=True)
        after = {pid: [me(c) for c in conns] for pid, conns in held.items()}
        assert after == {pid: [401] * len(conns) for pid, conns in held.items()}, after
        assert json.loads(ws.run("token", "list", "--json").stdout)[0]["status"] == "revoked"
        for conns in held.values():
            for conn in conns:
                conn.close()
        assert server.stop() == 0


def test_a_server_process_prepares_the_engine_then_leaves_it_out_of_full_collections(
    sqlite_workspace: Workspace,
) -> None:
    """A worker process of ``ocop serve`` (``app_from_env``; ``serve`` alike) builds the engine
    and each workflow's state machine as it starts, not in its first requests, then freezes what
    it holds — the app, its routes, the modules, the workflows — so that the collector's full
    passes walk only what requests made since. Unfrozen, a full pass walked some 115,000 objects
    (80-150 ms in the middle of a request)."""
    probe = (
        "import gc, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from ocop_workflow.server import app_from_env\n"
        "app = app_from_env()\n"
        "assert 'transitions' not in sys.modules\n"
        "with TestClient(app):  # the server's start-up (lifespan)\n"
        "    print(gc.get_freeze_count(), len(gc.get_objects()), 'transitions' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe],
        env=sqlite_workspace.env(),
        cwd=sqlite_workspace.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    frozen, walked, machines = done.stdout.split()
    assert int(frozen) > 50_000
    assert int(walked) < int(frozen) // 20
    assert machines == "True"  # the workflows' machines are built (by the transitions library)
