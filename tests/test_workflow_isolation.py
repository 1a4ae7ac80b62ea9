"""One bad workflow file never stops everyone: only its own dossiers wait, and are reported.

A syntax error in ``ocop-148.toml`` must not make ``ocop sweep`` fail nor hold the timers of
``ocop-1489`` dossiers; the held timers stay pending (never lost) and fire once the file loads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import WORKFLOWS, Workspace

T_REGISTER = "2026-03-02T09:00:00+07:00"
T_LATE = "2026-09-01T09:00:00+07:00"  # every registration deadline and reminder is due by then


def own_workflows(ws: Workspace) -> Path:
    own = ws.root / "workflows"
    shutil.copytree(WORKFLOWS, own)
    text = ws.config.read_text(encoding="utf-8")
    ws.config.write_text(
        text.replace(f'workflows_dir = "{WORKFLOWS}"', f'workflows_dir = "{own}"'), encoding="utf-8"
    )
    return own


def register(ws: Workspace, workflow: str) -> str:
    result = ws.run(
        "dossier", "register", "--product", f"Cà phê {workflow}", "--producer",
        "HTX Cà phê Ia Le", "--commune", "Ia Le", "--workflow", workflow, "--json",
        user="lan", now=T_REGISTER,
    )  # fmt: skip
    assert result.code == 0, str(result)
    return str(result.json()["id"])


def pending(ws: Workspace, dossier_id: str) -> int:
    timers = ws.run("timers", "list", "--dossier", dossier_id, "--due", "--json", now=T_LATE)
    assert timers.code == 0, str(timers)
    return len(timers.json())


def test_a_broken_workflow_file_holds_only_its_own_dossiers_timers_and_reports_them(
    workspace: Workspace,
) -> None:
    ws = workspace
    own = own_workflows(ws)
    current = register(ws, "ocop-1489")
    older = register(ws, "ocop-148")
    assert pending(ws, current) > 0 and pending(ws, older) > 0
    good = (own / "ocop-148.toml").read_text(encoding="utf-8")
    (own / "ocop-148.toml").write_text(good + "\n[[[ not toml\n", encoding="utf-8")

    held_before = pending(ws, older)
    for _ in range(2):  # reported on every sweep, never lost
        swept = ws.run("sweep", "--json", now=T_LATE)
        assert swept.code == 0, str(swept)
        document = swept.json()
        (unavailable,) = document["workflows_unavailable"]
        assert unavailable["workflow"] == "ocop-148"
        assert unavailable["timers_held"] == held_before
        assert "invalid TOML" in unavailable["problem"]
        assert document["timers_held"] == held_before
        assert "warning: workflow ocop-148 is unavailable" in swept.stderr
        assert pending(ws, current) == 0  # ocop-1489's timers fired
        assert pending(ws, older) == held_before

    listed = ws.run("dossier", "list", "--json", now=T_LATE)
    assert listed.code == 0, str(listed)
    assert {d["id"] for d in listed.json()} == {current, older}
    filtered = ws.run("dossier", "list", "--state", "registration", "--json", now=T_LATE)
    assert filtered.code == 0, str(filtered)
    only_older = ws.run("dossier", "list", "--workflow", "ocop-148", "--json", now=T_LATE)
    assert only_older.code == 0, str(only_older)
    assert [d["id"] for d in only_older.json()] == [older]
    workflows = ws.run("workflow", "list", "--json")
    assert workflows.code == 0, str(workflows)
    assert {w["name"] for w in workflows.json()} == {"ocop-1489", "ocop-1048"}
    assert "warning: workflow ocop-148 is unavailable" in workflows.stderr
    shown = ws.run("dossier", "show", older, "--json", now=T_LATE)
    assert shown.code == 0, str(shown)
    assert "invalid TOML" in shown.json()["workflow_unavailable"]

    (own / "ocop-148.toml").write_text(good, encoding="utf-8")
    swept = ws.run("sweep", "--json", now=T_LATE)
    assert swept.code == 0, str(swept)
    assert swept.json()["workflows_unavailable"] == []
    assert pending(ws, older) == 0


def test_a_worker_sweep_goes_on_with_a_broken_workflow_file(sqlite_workspace: Workspace) -> None:
    """In process, as the worker calls it: run_sweep returns, it does not raise."""
    from ocop_workflow.sweep import run_sweep

    ws = sqlite_workspace
    own = own_workflows(ws)
    current = register(ws, "ocop-1489")
    older = register(ws, "ocop-148")
    (own / "ocop-148.toml").write_text("name = ", encoding="utf-8")
    app = ws.app(now=T_LATE)
    counts = run_sweep(app.engine, app.now, deliver=False, batch_size=1)
    assert counts.timers_fired > 0
    assert set(counts.workflows_unavailable) == {"ocop-148"}
    assert pending(ws, current) == 0
    assert pending(ws, older) == counts.timers_held > 0
