"""Two independent ``ocop serve`` processes over one database, as on two server machines.

A province runs several servers behind a load balancer: a person's requests land on any of them.
What one server decides (a move, a revoked token, a failed login) must hold on the other at once:
the database is the only thing they share.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from conftest import Workspace, serving


@pytest.fixture
def two_servers(workspace: Workspace) -> Iterator[tuple[Workspace, str, str]]:
    with ExitStack() as stack:
        first = stack.enter_context(serving(workspace)).url
        second = stack.enter_context(serving(workspace)).url
        yield workspace, first, second


def _client(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_two_servers_racing_on_one_version_move_the_dossier_once(
    two_servers: tuple[Workspace, str, str],
) -> None:
    ws, first, second = two_servers
    token = ws.run("token", "create", "--user", "lan", check=True).stdout.strip()
    with _client(first, token) as a, _client(second, token) as b:
        made = a.post(
            "/api/v1/dossiers",
            json={"product": "Cà phê bột", "producer": "HTX Cà phê Ia Le", "commune": "Ia Le"},
        )
        assert made.status_code == 201, made.text
        dossier = made.json()["id"]
        seen = b.get(f"/api/v1/dossiers/{dossier}").json()["version"]
        start = threading.Barrier(2)
        answers: dict[str, httpx.Response] = {}

        def advance(name: str, http: httpx.Client) -> None:
            start.wait()
            answers[name] = http.post(
                f"/api/v1/dossiers/{dossier}/advance",
                json={"trigger": "accept_idea", "expect_version": seen},
            )

        threads = [
            threading.Thread(target=advance, args=(name, http))
            for name, http in (("a", a), ("b", b))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(r.status_code for r in answers.values())
        assert statuses == [200, 409], {k: (r.status_code, r.text) for k, r in answers.items()}
        loser = next(r for r in answers.values() if r.status_code == 409)
        assert loser.json()["error"]["code"] == "conflict"
        history = b.get(f"/api/v1/dossiers/{dossier}/history").json()
        assert [entry["trigger"] for entry in history] == ["register", "accept_idea"]
    assert ws.run("audit", "verify", check=True).code == 0


def test_a_token_revoked_through_one_server_is_refused_by_the_other_at_once(
    two_servers: tuple[Workspace, str, str],
) -> None:
    ws, first, second = two_servers
    token = ws.run("token", "create", "--user", "lan", check=True).stdout.strip()
    with _client(first, token) as a, _client(second, token) as b:
        assert b.get("/api/v1/me").status_code == 200  # the second server has seen it valid
        assert a.post("/api/v1/logout").json() == {"revoked": True}
        refused = b.get("/api/v1/me")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthenticated"


def test_failed_logins_on_one_server_count_on_the_other(
    two_servers: tuple[Workspace, str, str],
) -> None:
    ws, first, second = two_servers
    done = subprocess.run(
        [sys.executable, "-m", "ocop_workflow", "user", "set-password", "lan"],
        input="một mật khẩu dài\n",
        capture_output=True,
        text=True,
        env=ws.env(),
        cwd=ws.root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    limit = 5  # [server] login_attempts, the default
    statuses = []
    with httpx.Client(timeout=60) as http:
        for attempt in range(limit):  # 3 on the first server, 2 on the second: neither alone
            url = (first, second)[attempt % 2]  # saw enough to throttle, as a load balancer
            answer = http.post(f"{url}/api/v1/login", json={"user": "lan", "password": "sai"})
            statuses.append(answer.status_code)
        # throttled now, on both servers, even with the right password
        for url in (first, second):
            right = http.post(
                f"{url}/api/v1/login", json={"user": "lan", "password": "một mật khẩu dài"}
            )
            assert right.status_code == 429, right.text
    assert statuses == [401] * limit
