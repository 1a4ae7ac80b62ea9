"""What only a real ``ocop`` process shows: exit statuses, stdout/stderr apart, start-up.

Most tests run commands in-process through ``cli.main`` (see ``conftest.Workspace.run``); these
run the same commands as subprocesses and check that a process sees exactly what the in-process
runner reports, so the fast path cannot drift from what a user's shell gets.
"""

from __future__ import annotations

import json

import pytest
from conftest import Workspace

T0 = "2026-03-02T09:00:00+07:00"

#: (arguments, OCOP_USER, exit status) — one per kind of outcome of interface.md's exit codes.
CASES = [
    (("dossier", "list", "--json"), "hung", 0),
    (("dossier", "show", "OCOP-2099-9999", "--json"), "hung", 3),
    (("dossier", "advance", "OCOP-2099-9999", "submit_dossier", "--json"), "lan", 3),
    (("dossier", "show", "--json"), "hung", 2),
    (("--as", "nobody", "dossier", "list", "--json"), None, 3),
    (("no-such-command",), "hung", 2),
]


@pytest.mark.parametrize(("args", "user", "status"), CASES, ids=lambda c: str(c))
def test_a_real_process_exits_and_prints_as_the_in_process_runner_reports(
    sqlite_workspace: Workspace, args: tuple[str, ...], user: str | None, status: int
) -> None:
    real = sqlite_workspace.run(*args, user=user, now=T0, process=True)
    fast = sqlite_workspace.run(*args, user=user, now=T0, process=False)
    assert real.code == status, str(real)
    assert (fast.code, fast.stdout, fast.stderr) == (real.code, real.stdout, real.stderr)
    assert "Traceback" not in real.stderr
    if status:
        assert real.stderr.startswith("error: "), real.stderr
    if "--json" in args:  # stdout is one JSON document, the log and errors go to stderr
        json.loads(real.stdout)


def test_a_registration_in_a_real_process_logs_json_on_stderr_and_answers_json_on_stdout(
    sqlite_workspace: Workspace,
) -> None:
    done = sqlite_workspace.run(
        "dossier", "register", "--product", "Cà phê bột", "--producer", "HTX Cà phê Ia Le",
        "--commune", "Ia Le", "--json", user="lan", now=T0, process=True,
    )  # fmt: skip
    assert done.code == 0, str(done)
    dossier = json.loads(done.stdout)
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["event"] for e in events] == ["dossier.registered"]
    assert events[0]["dossier"] == dossier["id"]
