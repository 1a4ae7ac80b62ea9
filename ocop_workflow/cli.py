"""The ``ocop`` command: parse, call one library function, print. Nothing else lives here.

Imports of the database stack, the state machine library and the calendar happen inside the
commands, so ``ocop --help`` starts in a fraction of the time a database command needs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_base import app_of, emit_json, json_option, writing
from .errors import OcopError

if TYPE_CHECKING:
    from .app import App


# --- plumbing ---------------------------------------------------------------------------------


def tz_of(app: App) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(app.config.timezone)


def reader(app: App) -> Any:
    """Who is reading, for the policy's read scope: the acting user when one is named (or the
    login decides), else nobody in particular — a local reader holding the database's
    credentials sees everything the database holds anyway."""
    if app.acting_user or app.config.require_os_user:
        return app.actor()
    return None


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``--set K=V`` options → data field → text (the last of a repeated key wins): the facade
    takes values, and the workflow's fields check them."""
    from .errors import UsageError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {pair}: expected KEY=VALUE")
        out[key] = text
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="OCOP_CONFIG",
    default="config.toml",
    show_default=True,
    metavar="PATH",
    help="The config file (env OCOP_CONFIG).",
)
@click.option(
    "--as",
    "acting_user",
    envvar="OCOP_USER",
    metavar="USER",
    help="The acting user, a key of [users] (env OCOP_USER).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the log (events of each change) on a terminal too.",
)
@click.version_option(package_name="ocop_workflow", prog_name="ocop")
@click.pass_context
def cli(ctx: click.Context, config_path: str, acting_user: str | None, verbose: bool) -> None:
    """ocop — the OCOP (One Commune One Product) dossier workflow engine.

    Dossiers move registration → business plan → production → evaluation → promotion → review;
    every move is audited, deadlines are counted in working days and fire on their own.
    """
    from .app import App

    ctx.obj = app = App(config_path, acting_user)
    app.verbose = verbose
    ctx.call_on_close(app.close)


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps every failure to its one-line message and documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    json_mode = "--json" in args
    try:
        cli.main(args=args, prog_name="ocop", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "ocop"
        click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        if json_mode:
            _json_error("usage", exc.format_message())
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        if json_mode:
            _json_error("usage", exc.format_message())
        sys.exit(exc.exit_code)
    except OcopError as exc:
        click.echo(f"error: {one_line(exc.message + option_hint(exc.fields))}", err=True)
        if json_mode and not getattr(exc, "reported", False):
            document: dict[str, Any] = {"code": exc.code, "message": exc.message}
            reasons = getattr(exc, "reasons", None) or getattr(exc, "problems", None)
            if reasons and len(reasons) > 1:
                document["reasons"] = reasons
            if exc.fields:
                document["fields"] = list(exc.fields)
            click.echo(json.dumps({"error": document}, ensure_ascii=False))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line, keep the traceback for OCOP_DEBUG
        import os

        if os.environ.get("OCOP_DEBUG"):
            raise
        click.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (set OCOP_DEBUG=1 for a traceback)",
            err=True,
        )
        if json_mode:
            _json_error("unexpected", f"{type(exc).__name__}: {exc}")
        sys.exit(1)
    sys.exit(0)


#: The option that gives each input an error may name (``OcopError.fields``, in the facade's
#: terms); a data field ``data.NAME`` is ``--set NAME=…``.
OPTIONS = {
    "reason": "--reason TEXT",
    "note": "--note TEXT",
    "commune": "--commune",
    "council": "--council KEY",
    "a": "--a",
    "b": "--b",
    "c": "--c",
    "state": "--state",
    "stage": "--stage",
    "status": "--status",
    "format": "--format",
    "output": "-o FILE",
    "label": "--label",
    "expires_days": "--expires DAYS",
    "plan": "--plan",
}


def option_hint(fields: Iterable[str]) -> str:
    """`` — option --reason TEXT``: the options that give the inputs an error names. The
    facade's messages name values as every caller knows them; only here, at the command line,
    are they options."""
    options = [
        f"--set {field.removeprefix('data.')}=…" if field.startswith("data.") else OPTIONS[field]
        for field in fields
        if field.startswith("data.") or field in OPTIONS
    ]
    if not options:
        return ""
    return f" — option{'s' if len(options) > 1 else ''} {', '.join(options)}"


def one_line(message: str) -> str:
    """An error message on one line whatever it quotes: a control character a user typed (a
    newline in a value) is shown escaped, never acted on by the terminal."""
    from .inputs import printable

    return printable(message)


def _json_error(code: str, message: str) -> None:
    click.echo(json.dumps({"error": {"code": code, "message": message}}, ensure_ascii=False))


# --- init -------------------------------------------------------------------------------------


@cli.command()
@json_option
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Create or upgrade the database schema (idempotent; safe on every start)."""
    app = app_of(ctx)
    done = app.ocop.init_database()
    if done.exposed:
        click.echo(done.exposed, err=True)
    if done.superuser:
        click.echo(
            "warning: connected to PostgreSQL as a superuser, who can rewrite the audit trail "
            "and bypass its triggers: run ocop as the role README 'Database roles' creates",
            err=True,
        )
    if as_json:
        emit_json(done.to_json())
    elif done.revision_before == done.revision:
        click.echo(f"database {done.database} is up to date (revision {done.revision})")
    else:
        before = done.revision_before or "empty"
        click.echo(f"database {done.database} upgraded {before} → {done.revision}")


# --- config -----------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """The configuration file: a commented starter to begin with."""


@config_group.command("example")
def config_example() -> None:
    """Print a commented, working config.toml: `ocop config example > config.toml`."""
    from .config import example_config

    click.echo(example_config(), nl=False)


# --- workflow ---------------------------------------------------------------------------------


@cli.group()
def workflow() -> None:
    """Shipped and configured workflows: list, show, validate, diagram."""


@workflow.command("list")
@json_option
@click.pass_context
def workflow_list(ctx: click.Context, as_json: bool) -> None:
    """The workflows: those shipped, and those of [engine] workflows_dir; the default marked."""
    app = app_of(ctx)
    if app.remote:
        rows = app.remote.call("GET", "/workflows")
    else:
        rows = [w.to_json() for w in app.ocop.workflows()]
        for name, problem in app.registry.unavailable().items():
            click.echo(f"warning: workflow {name} is unavailable: {one_line(problem)}", err=True)
    if as_json:
        emit_json(rows)
        return
    from .render import table

    click.echo(
        table(
            ["name", "default", "version", "title"],
            [(r["name"], "*" if r["default"] else "", r["version"], r["title"]) for r in rows],
        )
    )


@workflow.command("show")
@click.argument("name")
@json_option
@click.pass_context
def workflow_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """States, stages, triggers, roles and deadlines of workflow NAME."""
    app = app_of(ctx)
    if app.remote:
        document = app.remote.call("GET", f"/workflows/{_segment(name)}")
    else:
        document = app.ocop.workflow(reader(app), name).to_json()
    if as_json:
        emit_json(document)
        return
    from .render import table

    click.echo(f"{document['name']} — {document['title']} ({document['version']})")
    if document["legal_basis"]:
        click.echo(f"basis: {document['legal_basis']}")
    click.echo("")
    click.echo(
        table(
            ["state", "stage", "label", "deadline"],
            [
                (
                    s["name"] + (" (final)" if s["final"] else ""),
                    s["stage"],
                    s["label_vi"],
                    s["deadline"] or "",
                )
                for s in document["states"]
            ],
        )
    )
    click.echo("")
    click.echo(
        table(
            ["trigger", "from", "to", "who", "guards"],
            [
                (t["trigger"], t["from"], t["to"], ", ".join(t["roles"]), ", ".join(t["guards"]))
                for t in document["transitions"]
            ],
        )
    )
    if document["dossiers"] is not None:
        click.echo("")
        click.echo(_dossiers_line(name, document))
    changed = document["dossiers_on_other_content"]
    if changed:
        click.echo(
            f"changed in place under {len(changed)} dossier(s): {', '.join(changed[:SHOWN_IDS])}"
            + (", …" if len(changed) > SHOWN_IDS else "")
            + f"\n  refused until: ocop workflow migrate --from {name} --to {name} --plan PLAN.toml"
        )


def _segment(name: str) -> str:
    """A dossier id or workflow name as one URL path segment. The server decodes ``%2F``
    before it routes, so a name holding ``/`` (or that is ``.`` or ``..``) would reach another
    endpoint (``ID/history``): refused here, as no id or workflow name holds one."""
    from urllib.parse import quote

    from .errors import UsageError

    if "/" in name or "\\" in name or name in {".", ".."}:
        raise UsageError(f"{name!r} is not a dossier id or workflow name")
    return quote(name, safe="")


#: How many dossier ids ``workflow show`` prints before pointing at ``dossier list``.
SHOWN_IDS = 10


def _dossiers_line(name: str, document: dict[str, Any]) -> str:
    count, ids = document["dossiers"], document["dossier_ids"]
    line = f"dossiers on {name}: {count}"
    if document["dossiers_by_version"]:
        versions = ", ".join(f"{n} on {v}" for v, n in document["dossiers_by_version"].items())
        line += f" ({versions})"
    if ids:
        shown = ", ".join(ids[:SHOWN_IDS])
        more = f", … {count - SHOWN_IDS} more" if count > SHOWN_IDS else ""
        line += f"\n  {shown}{more}\n  all of them: ocop dossier list --workflow {name}"
    return line


@workflow.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=True, path_type=str))
@json_option
@click.pass_context
def workflow_validate(ctx: click.Context, paths: tuple[str, ...], as_json: bool) -> None:
    """Check workflow files (default: the configured folder); list every problem; exit 1 if any."""
    from .workflow_info import validate

    app = app_of(ctx)
    # Through a server without a config file of its own, the files given are checked alone.
    local = not (app.through_server() and not app.config_path.exists())
    checked, problems = validate(app, paths, installed=local)
    if as_json:
        emit_json({"ok": not problems, "files": checked, "problems": problems})
    else:
        for problem in problems:
            click.echo(problem)
        if not problems:
            click.echo(f"{len(checked)} workflow file(s) valid: {', '.join(checked)}")
    if problems:
        from .errors import WorkflowFileError

        error = WorkflowFileError(f"{len(problems)} problem(s) in workflow files", problems)
        error.reported = True  # type: ignore[attr-defined]
        raise error


@workflow.command("diagram")
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "svg"]),
    default="mermaid",
    show_default=True,
    help="Diagram language.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here.")
@click.pass_context
def workflow_diagram(ctx: click.Context, name: str, fmt: str, output: str | None) -> None:
    """The state diagram of workflow NAME (Mermaid, Graphviz DOT, or SVG via Graphviz)."""
    app = app_of(ctx)
    if app.remote:
        path = f"/workflows/{_segment(name)}/diagram"
        text = app.remote.call("GET", path, params={"format": fmt}, text=True)
    else:
        text = app.ocop.diagram(name, fmt)
    if output:
        from pathlib import Path

        from .outputs import write_text

        write_text(Path(output), text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


# --- dossier ----------------------------------------------------------------------------------


@cli.group()
def dossier() -> None:
    """Register, list, show and advance dossiers; their triggers and history."""


set_option = click.option(
    "--set", "pairs", multiple=True, metavar="K=V", help="Set a data field (repeatable)."
)


@dossier.command("register")
@click.option("--product", required=True, help="Product name (tên sản phẩm).")
@click.option("--producer", required=True, help="Producing organisation (chủ thể).")
@click.option("--commune", required=True, help="Commune (xã).")
@click.option("--group", help="Product group (e.g. thực phẩm, đồ uống).")
@click.option("--workflow", "workflow_name", help="Workflow (default: [engine] default_workflow).")
@click.option("--id", "dossier_id", help="Dossier id (default: OCOP-<year>-<n>).")
@set_option
@json_option
@click.pass_context
def dossier_register(
    ctx: click.Context,
    product: str,
    producer: str,
    commune: str,
    group: str | None,
    workflow_name: str | None,
    dossier_id: str | None,
    pairs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a new dossier in its workflow's initial state."""
    app = app_of(ctx)
    if app.remote:
        body: dict[str, Any] = {"product": product, "producer": producer, "commune": commune}
        body["group"] = group
        body |= {"workflow": workflow_name, "id": dossier_id, "data": parse_pairs(pairs)}
        document = app.remote.call("POST", "/dossiers", json=body)
    else:
        writing(app)
        document = app.ocop.register(
            app.actor(),
            product=product,
            producer=producer,
            commune=commune,
            group=group,
            workflow=workflow_name,
            dossier_id=dossier_id,
            data=parse_pairs(pairs),
        ).to_json()
    if as_json:
        emit_json(document)
    else:
        from .render import minute

        click.echo(
            f"registered {document['id']}: {document['product']} ({document['producer']}, "
            f"{document['commune']}) — {document['state']} «{document['state_label']}»"
            + (f", deadline {minute(document['deadline_at'])}" if document["deadline_at"] else "")
        )


@dossier.command("list")
@click.option("--state", help="Only dossiers in this state.")
@click.option("--stage", help="Only dossiers in this stage.")
@click.option("--commune", help="Only dossiers of this commune.")
@click.option("--overdue", is_flag=True, help="Only dossiers past their deadline.")
@click.option("--workflow", "workflow_name", help="Only dossiers on this workflow.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "xlsx"]),
    default="table",
    show_default=True,
    help="Output format (xlsx needs -o).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@json_option
@click.pass_context
def dossier_list(
    ctx: click.Context,
    state: str | None,
    stage: str | None,
    commune: str | None,
    overdue: bool,
    workflow_name: str | None,
    fmt: str,
    output: str | None,
    as_json: bool,
) -> None:
    """One row per dossier, filtered; as a table, JSON, CSV or XLSX."""
    from .views import DOSSIER_COLUMNS, DossierFilter

    app = app_of(ctx)
    filters = DossierFilter(state, stage, commune, workflow_name, overdue)
    rows: Iterable[dict[str, Any]]
    if app.remote:
        rows = _remote_pages(app.remote, filters)
    else:
        rows = (d.to_json() for d in app.ocop.iter_dossiers(reader(app), filters))
    if as_json:
        emit_json(list(rows))
        return
    if fmt != "table":
        from .exports import write_table

        wanted = _bar_wanted(data_on_stdout=not output) and not app.remote
        total = _count_dossiers(app, filters) if wanted else 0
        with output_file(output) as target, progress_bar("exporting", total) as advance:
            count = write_table(_counted(rows, advance), DOSSIER_COLUMNS, fmt, target)
        if output:
            click.echo(f"wrote {count} dossier(s) to {output}", err=True)
        return
    from .render import minute, table

    click.echo(
        table(
            ["id", "product", "commune", "state", "deadline", "overdue", "v"],
            [
                (
                    r["id"],
                    r["product"],
                    r["commune"],
                    r["state"],
                    minute(r["deadline_at"]),
                    r["overdue"],
                    r["version"],
                )
                for r in rows
            ],
        )
    )


@dossier.command("show")
@click.argument("dossier_id", metavar="ID")
@json_option
@click.pass_context
def dossier_show(ctx: click.Context, dossier_id: str, as_json: bool) -> None:
    """The dossier, its deadline and why, its pending timers, its next possible triggers."""
    app = app_of(ctx)
    if app.remote:
        document = app.remote.call("GET", f"/dossiers/{_segment(dossier_id)}")
    else:
        document = app.ocop.show(reader(app), dossier_id).to_json()
    if as_json:
        emit_json(document)
        return
    from .render import days_off_text, table, to_the_second

    d = document
    pairs: list[tuple[str, str]] = [
        ("producer", d["producer"]),
        ("commune", d["commune"] + (f"   group {d['group']}" if d["group"] else "")),
        ("workflow", f"{d['workflow']} ({d['workflow_version']})"),
        ("state", f"{d['state']} «{d['state_label']}»"),
        ("stage", f"{d['stage']}   version {d['version']}"),
        ("since", to_the_second(d["state_entered_at"])),
    ]
    if d.get("workflow_unavailable"):
        pairs.append(("warning", f"workflow unavailable: {d['workflow_unavailable']}"))
    came = d.get("entered") or {}
    if came.get("by") == "import":
        pairs.append(
            (
                "entered",
                f"import by {came['actor']} from {came.get('file')} line {came.get('line')} "
                f"(sha256 {str(came.get('sha256'))[:12]}…)",
            )
        )
    if d["deadline_at"]:
        pairs.append(("deadline", d["deadline_at"] + ("  OVERDUE" if d["overdue"] else "")))
        note = d["deadline"] or {}
        if note:
            pairs.append(("  why", note.get("rule", "")))
            pairs.append(("", f"from {note.get('start')} to the end of {note.get('last_day')}"))
            if note.get("period"):
                pairs.append(("", note["period"]))
            off = note.get("days_off") or []
            if off:
                from .calendar import WEEKEND_NAMES

                pairs.append(("", days_off_text(off, WEEKEND_NAMES)))
    pairs += [(k, str(v)) for k, v in d["data"].items() if k not in STRUCTURED_DATA]
    for level, scoring in d["data"].get("scoring", {}).items():
        pairs.append(
            ("scoring", f"{level} council {scoring.get('council')}: " + _scoring_line(scoring))
        )
    width = max(len(label) for label, _ in pairs)
    lines = [f"{d['id']}  {d['product']}"]
    lines += [f"  {label:<{width}}  {value}" for label, value in pairs]
    click.echo("\n".join(lines))
    if d["documents"]:
        click.echo("\ndocuments")
        click.echo(
            table(
                ["kind", "required", "present", "files"],
                [
                    (x["kind"], x["required"], x["present"], ", ".join(x["files"]) or "MISSING")
                    for x in d["documents"]
                ],
            )
        )
    if d["timers"]:
        click.echo("\npending timers")
        click.echo(
            table(["id", "kind", "due"], [(t["id"], t["kind"], t["due_at"]) for t in d["timers"]])
        )
    if d["next_triggers"]:
        click.echo("\nnext possible triggers")
        click.echo(
            table(
                ["trigger", "to", "who"],
                [(t["trigger"], t["to"], ", ".join(t["roles"])) for t in d["next_triggers"]],
            )
        )


#: Data keys the engine keeps as structures; `dossier show` gives them their own sections.
STRUCTURED_DATA = frozenset({"documents", "scoring", "previous_certificates"})


def _scoring_line(scoring: dict[str, Any]) -> str:
    scores = scoring.get("scores", {})
    given = ", ".join(f"{who} {s['total']:g}" for who, s in scores.items()) or "no scores yet"
    if not scoring.get("closed"):
        return f"open ({given})"
    result = scoring["result"]
    capped = f", capped from {result['stars_by_points']}★" if result["capped"] else ""
    return f"closed: mean {result['score']:g} → {result['stars']}★{capped} ({given})"


@dossier.command("advance")
@click.argument("dossier_id", metavar="ID")
@click.argument("trigger")
@click.option("--reason", help="Why (required by return, reject, withdraw, revoke…).")
@set_option
@click.option(
    "--expect-version",
    type=click.IntRange(1, 2**62),
    help="Only if the dossier is still at this version.",
)
@json_option
@click.pass_context
def dossier_advance(
    ctx: click.Context,
    dossier_id: str,
    trigger: str,
    reason: str | None,
    pairs: tuple[str, ...],
    expect_version: int | None,
    as_json: bool,
) -> None:
    """Fire TRIGGER on dossier ID (one transaction; refused moves write nothing)."""
    app = app_of(ctx)
    if app.remote:
        body: dict[str, Any] = {"trigger": trigger, "reason": reason}
        body["data"] = parse_pairs(pairs)
        body["expect_version"] = expect_version
        document = app.remote.call("POST", f"/dossiers/{_segment(dossier_id)}/advance", json=body)
    else:
        writing(app)
        document = app.ocop.advance(
            app.actor(),
            dossier_id,
            trigger,
            reason=reason,
            data=parse_pairs(pairs),
            expect_version=expect_version,
        ).to_json()
    if as_json:
        emit_json(document)
    else:
        from .render import minute

        click.echo(
            f"{document['id']}: {document['from']} → {document['to']} ({trigger} by "
            f"{document['actor']}, entry {document['seq']})"
            + (f", deadline {minute(document['deadline_at'])}" if document["deadline_at"] else "")
        )


@dossier.command("triggers")
@click.argument("dossier_id", metavar="ID")
@json_option
@click.pass_context
def dossier_triggers(ctx: click.Context, dossier_id: str, as_json: bool) -> None:
    """For the acting user: each trigger from the current state, allowed or not, and why not."""
    app = app_of(ctx)
    if app.remote:
        rows = app.remote.call("GET", f"/dossiers/{_segment(dossier_id)}/triggers")
    else:
        rows = [t.to_json() for t in app.ocop.triggers(app.actor(), dossier_id)]
    if as_json:
        emit_json(rows)
        return
    from .render import table

    click.echo(
        table(
            ["trigger", "to", "allowed", "why not"],
            [
                (
                    r["trigger"] + (" (needs --reason)" if r["needs_reason"] else ""),
                    r["to"],
                    r["allowed"],
                    "; ".join(r["reasons"]),
                )
                for r in rows
            ],
        )
    )


@dossier.command("history")
@click.argument("dossier_id", metavar="ID")
@json_option
@click.pass_context
def dossier_history(ctx: click.Context, dossier_id: str, as_json: bool) -> None:
    """The audit trail of dossier ID, oldest first."""
    app = app_of(ctx)
    if app.remote:
        entries = app.remote.call("GET", f"/dossiers/{_segment(dossier_id)}/history")
    else:
        entries = [e.to_json() for e in app.ocop.history(reader(app), dossier_id)]
    if as_json:
        emit_json(entries)
        return
    from .render import table

    click.echo(
        table(
            ["seq", "at", "trigger", "from", "to", "actor", "reason"],
            [
                (
                    e["seq"],
                    e["at"][:19].replace("T", " "),
                    e["trigger"],
                    e["from"],
                    e["to"],
                    e["actor"],
                    e["reason"],
                )
                for e in entries
            ],
        )
    )


@dossier.command("attach")
@click.argument("dossier_id", metavar="ID")
@click.argument("kind")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@json_option
@click.pass_context
def dossier_attach(
    ctx: click.Context, dossier_id: str, kind: str, file: str, as_json: bool
) -> None:
    """Attach FILE to dossier ID as a document of KIND (stored once by SHA-256, audited)."""
    from pathlib import Path

    app = app_of(ctx)
    if app.remote:
        result = _remote_upload(
            app.remote, f"/dossiers/{_segment(dossier_id)}/documents", Path(file), {"kind": kind}
        )
    else:
        writing(app)
        result = app.ocop.attach(app.actor(), dossier_id, kind, Path(file)).to_json()
    if as_json:
        emit_json(result)
    elif result["already_attached"]:
        click.echo(f"{dossier_id}: {result['name']} is already attached as {kind}")
    else:
        click.echo(
            f"{dossier_id}: attached {result['name']} as {kind} "
            f"({result['size']} bytes, sha256 {result['sha256'][:12]}…, entry {result['seq']})"
        )


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--dry-run", is_flag=True, help="Check every row, write nothing.")
@json_option
@click.pass_context
def import_(ctx: click.Context, file: str, dry_run: bool, as_json: bool) -> None:
    """Register dossiers from FILE.csv or FILE.xlsx: every row checked first, all or nothing."""
    from pathlib import Path

    from .importer import ImportRejected

    app = app_of(ctx)
    path = Path(file)
    if app.remote:
        _remote_import(app.remote, path, dry_run, as_json)
        return
    writing(app)
    actor = app.actor()
    with progress_bar("checking rows", _count_rows(path) if _bar_wanted() else 0) as advance:
        try:
            report = app.ocop.import_file(actor, path, dry_run=dry_run, progress=advance)
        except ImportRejected as rejected:
            for problem in rejected.problems:
                click.echo(one_line(problem), err=True)
            if as_json:
                emit_json(rejected.report.document())
                rejected.reported = True  # type: ignore[attr-defined]
            raise
    if as_json:
        emit_json(report.document())
    elif dry_run:
        click.echo(
            f"{path.name}: {report.rows} row(s) checked, all valid (dry run, nothing written)"
        )
    else:
        click.echo(f"{path.name}: imported {report.imported} dossier(s)")


def output_file(output: str | None) -> Any:
    """``-o FILE``: a temporary path renamed to FILE when the export is complete (nothing left
    behind on failure; a missing folder is exit 2 before any work); no ``-o``: None (stdout)."""
    from contextlib import nullcontext
    from pathlib import Path

    from .outputs import atomic_output, check_output

    if output is None:
        return nullcontext(None)
    check_output(Path(output))
    return atomic_output(Path(output))


def _remote_pages(client: Any, filters: Any) -> Iterable[dict[str, Any]]:
    """Every dossier the server lets us see, page by page."""
    offset, limit = 0, 500
    query = {
        "state": filters.state,
        "stage": filters.stage,
        "commune": filters.commune,
        "workflow": filters.workflow,
        "overdue": filters.overdue,
    }
    while True:
        page = client.call("GET", "/dossiers", params={**query, "limit": limit, "offset": offset})
        yield from page["items"]
        offset += limit
        if offset >= page["total"]:
            return


def _remote_upload(client: Any, path: str, file: Any, form: dict[str, Any]) -> Any:
    """Upload ``file`` (streamed from disk, never read whole) with the form fields."""
    from .inputs import check_file

    check_file(file)
    with file.open("rb") as handle:
        return client.call("POST", path, data=form, files={"file": (file.name, handle)})


def _remote_import(client: Any, path: Any, dry_run: bool, as_json: bool) -> None:
    """``import`` through the server: a refused file says what the local one says — each
    problem on stderr and, with ``--json``, the row-by-row report — whatever its exit code."""
    from .errors import OcopError

    try:
        report = _remote_upload(client, "/imports", path, {"dry_run": str(dry_run).lower()})
    except OcopError as rejected:
        refused = getattr(rejected, "report", None)
        for problem in (refused or {}).get("problems") or getattr(rejected, "reasons", None) or ():
            click.echo(one_line(problem), err=True)
        if as_json and refused is not None:
            emit_json(refused)
            rejected.reported = True  # type: ignore[attr-defined]
        raise
    if as_json:
        emit_json(report)
    elif dry_run:
        click.echo(f"{path.name}: {report['rows']} row(s) checked, all valid (dry run)")
    else:
        click.echo(f"{path.name}: imported {report['imported']} dossier(s)")


def _count_dossiers(app: App, filters: Any) -> int:
    """How many dossiers an export will write (the bar's length)."""
    return app.ocop.count_dossiers(reader(app), filters)


def _counted(rows: Iterable[Any], advance: Callable[[int], None]) -> Iterable[Any]:
    for row in rows:
        advance(1)
        yield row


def _count_rows(path: Any) -> int:
    """Data rows in the sheet, for the progress bar (0 when unknown: no bar, no error here —
    the importer itself reports an unreadable file)."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open("rb") as handle:
                return max(sum(1 for _ in handle) - 1, 0)
        if path.suffix.lower() == ".xlsx":
            from openpyxl import load_workbook

            book = load_workbook(path, read_only=True)
            try:
                sheet = book.active
                return max((sheet.max_row or 1) - 1, 0) if sheet is not None else 0
            finally:
                book.close()
    except Exception:  # a count for a bar must never be what fails an import
        return 0
    return 0


def _bar_wanted(*, data_on_stdout: bool = False) -> bool:
    """Whether to count for a progress bar at all: stderr is a terminal, and the data is not
    being printed on that terminal too (the bar would be drawn between its lines)."""
    return sys.stderr.isatty() and not (data_on_stdout and sys.stdout.isatty())


def progress_bar(label: str, length: int) -> Any:
    """A progress bar on stderr for long operations — only on a terminal, never in a pipe."""
    from contextlib import contextmanager

    @contextmanager
    def bar() -> Any:
        if not sys.stderr.isatty() or length < 1000:
            yield lambda _n: None
            return
        with click.progressbar(length=length, label=label, file=sys.stderr) as progress:
            yield progress.update

    return bar()


# --- council scoring --------------------------------------------------------------------------


@cli.command()
@click.argument("dossier_id", metavar="ID")
@click.option("--member", help="The council member whose score this is (a user key).")
@click.option("--a", "part_a", type=float, help="Part A points.")
@click.option("--b", "part_b", type=float, help="Part B points.")
@click.option("--c", "part_c", type=float, help="Part C points.")
@click.option("--note", help="The member's remark.")
@click.option("--council", "council_key", help="The council (when several cover the dossier).")
@click.option("--close", "close", is_flag=True, help="Chair: close the round (mean, stars).")
@click.option("--rescore", is_flag=True, help="Chair: clear the scores (or --member's) to redo.")
@click.option("--reason", help="Why a re-score is needed.")
@json_option
@click.pass_context
def score(
    ctx: click.Context,
    dossier_id: str,
    member: str | None,
    part_a: float | None,
    part_b: float | None,
    part_c: float | None,
    note: str | None,
    council_key: str | None,
    close: bool,
    rescore: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Council scoring of dossier ID: a member's score, or the chair's --close / --rescore."""
    from .errors import UsageError

    app = app_of(ctx)
    if close and rescore:
        raise UsageError("give --close or --rescore, not both")
    if app.remote:
        body: dict[str, Any]
        if close:
            path, body = "scoring/close", {"council": council_key}
        elif rescore:
            path, body = "scoring/rescore", {"reason": reason, "member": member}
            body["council"] = council_key
        else:
            if member is None:
                raise UsageError("--member is required to record a score")
            path, body = "scores", {"member": member, "a": part_a, "b": part_b, "c": part_c}
            body |= {"note": note, "council": council_key}
        result = app.remote.call("POST", f"/dossiers/{_segment(dossier_id)}/{path}", json=body)
        _print_scoring(dossier_id, result, as_json)
        return
    writing(app)
    actor = app.actor()
    if close:
        scored = app.ocop.close_scoring(actor, dossier_id, council=council_key)
    elif rescore:
        scored = app.ocop.rescore(
            actor, dossier_id, reason=reason, member=member, council=council_key
        )
    else:
        if member is None:
            raise UsageError("--member is required to record a score")
        parts = {k: v for k, v in (("a", part_a), ("b", part_b), ("c", part_c)) if v is not None}
        scored = app.ocop.score(
            actor, dossier_id, member=member, parts=parts, note=note, council=council_key
        )
    _print_scoring(dossier_id, scored.to_json(), as_json)


def _print_scoring(dossier_id: str, result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    for level, scoring in result["scoring"].items():
        click.echo(
            f"{dossier_id} {level} council {scoring.get('council')}: {_scoring_line(scoring)}"
        )
        for reason in scoring.get("result", {}).get("capped", []):
            click.echo(f"  capped: {reason}")


# --- timers, notifications, sweep, worker -----------------------------------------------------


@cli.group()
def timers() -> None:
    """Reminders, deadlines, escalations and expiries."""


@timers.command("list")
@click.option("--dossier", "dossier_id", metavar="ID", help="Only this dossier's timers.")
@click.option("--due", is_flag=True, help="Only timers already due now.")
@click.option("--all", "include_all", is_flag=True, help="Fired and cancelled ones too.")
@json_option
@click.pass_context
def timers_list(
    ctx: click.Context, dossier_id: str | None, due: bool, include_all: bool, as_json: bool
) -> None:
    """Pending timers (with --all: every timer, whatever its status)."""
    app = app_of(ctx)
    if app.remote:
        query = {"dossier": dossier_id, "due": due, "all": include_all}
        rows = app.remote.call("GET", "/timers", params=query)
    else:
        found = app.ocop.timers(
            reader(app), dossier_id=dossier_id, due=due, include_all=include_all
        )
        rows = [t.to_json() for t in found]
    if as_json:
        emit_json(list(rows))
        return
    from .render import minute, table

    click.echo(
        table(
            ["id", "dossier", "kind", "state", "due", "status"],
            [
                (
                    r["id"],
                    r["dossier"],
                    r["kind"],
                    r["state"],
                    minute(r["due_at"]),
                    r["status"],
                )
                for r in rows
            ],
        )
    )


@cli.group()
def notifications() -> None:
    """The outbox of notifications (file, email, webhook)."""


@notifications.command("list")
@click.option("--status", type=click.Choice(["pending", "sent", "dead"]), help="Only this status.")
@click.option("--dossier", "dossier_id", metavar="ID", help="Only this dossier's notifications.")
@json_option
@click.pass_context
def notifications_list(
    ctx: click.Context, status: str | None, dossier_id: str | None, as_json: bool
) -> None:
    """The outbox, oldest first."""
    app = app_of(ctx)
    if app.remote:
        query = {"status": status, "dossier": dossier_id}
        rows = app.remote.call("GET", "/notifications", params=query)
    else:
        outbox = app.ocop.notifications(reader(app), status=status, dossier_id=dossier_id)
        rows = [n.to_json() for n in outbox]
    if as_json:
        emit_json(list(rows))
        return
    from .render import table

    click.echo(
        table(
            ["id", "dossier", "kind", "channel", "recipient", "status", "tries", "subject"],
            [
                (
                    r["id"],
                    r["dossier"],
                    r["kind"],
                    r["channel"],
                    r["recipient"],
                    r["status"],
                    r["attempts"],
                    r["subject"],
                )
                for r in rows
            ],
        )
    )


@cli.command()
@json_option
@click.pass_context
def sweep(ctx: click.Context, as_json: bool) -> None:
    """Once: fire every due timer, deliver pending notifications, print counts, exit."""
    app = app_of(ctx)
    writing(app)
    due = app.ocop.count_due() if _bar_wanted() else 0
    with progress_bar("firing timers", due) as advance:
        counts = app.ocop.sweep(progress=advance)
    document = counts.document()
    for held in document["workflows_unavailable"]:
        click.echo(
            f"warning: workflow {held['workflow']} is unavailable, {held['timers_held']} due "
            f"timer(s) of its dossiers held until it loads: {held['problem']}",
            err=True,
        )
    if as_json:
        emit_json(document)
    else:
        click.echo(
            ", ".join(
                f"{k.replace('_', ' ')}: {v}"
                for k, v in document.items()
                if k != "workflows_unavailable"
            )
        )


@cli.command()
@click.option("--once", is_flag=True, help="Run one sweep and exit (for cron).")
@click.pass_context
def worker(ctx: click.Context, once: bool) -> None:
    """Run the scheduler until SIGINT/SIGTERM, then finish the sweep in flight and exit 0."""
    from .scheduler import run_worker

    app = app_of(ctx)
    writing(app, service=True)
    run_worker(app, once=once)


# --- reports ----------------------------------------------------------------------------------


@cli.group()
def report() -> None:
    """Progress against the plan's targets; the HTML report of a year."""


@report.command("progress")
@click.option(
    "--year",
    type=click.IntRange(1900, 2199),
    required=True,
    help="The plan year ([targets.<year>]).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "xlsx"]),
    default="table",
    show_default=True,
    help="Output format (xlsx needs -o).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@json_option
@click.pass_context
def report_progress(
    ctx: click.Context, year: int, fmt: str, output: str | None, as_json: bool
) -> None:
    """Each target of YEAR: reached, left, by commune and stage; overdue and stuck dossiers."""
    app = app_of(ctx)
    if app.remote:
        document = app.remote.call("GET", "/reports/progress", params={"year": year})
    else:
        document = app.ocop.progress(None, year).to_json()
    if as_json:
        emit_json(document)
        return
    if fmt != "table":
        from .errors import UsageError

        if fmt == "xlsx":
            from .report import write_xlsx

            if not output:
                raise UsageError("--format xlsx needs -o FILE.xlsx")
            with output_file(output) as target:
                write_xlsx(document, target)
        else:
            from .exports import write_table
            from .report import target_rows_for_csv

            rows = target_rows_for_csv(document)
            columns = list(rows[0]) if rows else ["metric"]
            with output_file(output) as target:
                write_table(rows, columns, "csv", target)
        if output:
            click.echo(f"wrote {output}", err=True)
        return
    click.echo(print_progress(document))


def print_progress(document: dict[str, Any]) -> str:
    """The progress report as text for a terminal."""
    from .render import table

    parts = [
        f"OCOP {document['year']} — progress against the plan ({document['generated_at'][:10]})"
    ]
    parts.append(
        table(
            ["target", "plan", "reached", "left", "what"],
            [
                (r["metric"], r["target"], r["reached"], r["left"], r["label"])
                for r in document["targets"]
            ],
        )
    )

    def breakdown(key: str, columns: list[str], *extra: tuple[Any, ...]) -> str:
        """One row per target, one column per commune or stage."""
        rows = [(r["metric"], *[r[key].get(c, 0) for c in columns]) for r in document["targets"]]
        return table(["target", *columns], [*rows, *extra])

    if document["communes"]:
        parts += ["\nby commune", breakdown("by_commune", document["communes"])]
    stages = document["stages"]
    every_dossier = ("all dossiers", *[document["by_stage"].get(s, 0) for s in stages])
    parts += [
        "\nby stage (where the counted dossiers are now)",
        breakdown("by_stage", stages, every_dossier),
    ]
    if document["overdue"]:
        parts.append("\noverdue")
        parts.append(
            table(
                ["id", "product", "commune", "state", "days late"],
                [
                    (o["id"], o["product"], o["commune"], o["state"], o["days_late"])
                    for o in document["overdue"]
                ],
            )
        )
    if document["stuck"]:
        parts.append("\nlongest in their stage")
        parts.append(
            table(
                ["id", "product", "state", "since", "days"],
                [
                    (s["id"], s["product"], s["state"], s["since"][:10], s["days"])
                    for s in document["stuck"]
                ],
            )
        )
    return "\n".join(parts)


@report.command("html")
@click.option("--year", type=click.IntRange(1900, 2199), required=True, help="The plan year.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), required=True, help="The HTML file to write."
)
@click.option(
    "--weeks",
    type=click.IntRange(1, 260),
    default=4,
    show_default=True,
    help="How many coming weeks the deadline calendar shows.",
)
@click.pass_context
def report_html(ctx: click.Context, year: int, output: str, weeks: int) -> None:
    """One self-contained HTML file: funnel, deadline calendar, timelines, workflow diagram."""
    from pathlib import Path

    from .outputs import check_output, write_text

    app = app_of(ctx)
    check_output(Path(output))
    if app.remote:
        query = {"year": year, "weeks": weeks}
        html = app.remote.call("GET", "/reports/html", params=query, text=True)
    else:
        html = app.ocop.report_html(None, year, weeks=weeks)
    write_text(Path(output), html)
    click.echo(f"wrote {output}", err=True)


# --- audit ------------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Verify and export the tamper-evident audit trail."""


@audit.command("verify")
@click.option("--dossier", "dossier_id", metavar="ID", help="Only this dossier's chain.")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A signed checkpoint the chains must still extend (repeatable).",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    help="Key that signed the checkpoints (default: [audit] public_key).",
)
@json_option
@click.pass_context
def audit_verify(
    ctx: click.Context,
    dossier_id: str | None,
    checkpoints: tuple[str, ...],
    public_key: str | None,
    as_json: bool,
) -> None:
    """Recompute the hash chains; exit 7 naming the first broken entry of each bad chain.

    With --checkpoint, also exit 7 for each dossier whose chain was rewritten, cut short or
    deleted since the checkpoint was signed, and for a checkpoint whose signature is bad.
    """
    app = app_of(ctx)
    if app.remote:
        document = _remote_verify(app.remote, dossier_id, checkpoints, public_key)
    else:
        read = []
        if checkpoints:
            from . import checkpoint as cp

            key = cp.load_public(_public_key_path(app, public_key))
            read = [cp.read(Path(path), key) for path in checkpoints]
        total = app.ocop.count_audit_entries(None, dossier_id) if _bar_wanted() else 0
        with progress_bar("verifying", total) as advance:
            verified = app.ocop.audit_verify(None, dossier_id, progress=advance, checkpoints=read)
        document = verified.to_json()
    _print_verification(document, as_json)


def _remote_verify(
    client: Any, dossier_id: str | None, checkpoints: tuple[str, ...], public_key: str | None
) -> dict[str, Any]:
    """``audit verify`` through the server: the checkpoint files are sent (the server checks
    their signatures with --public-key's key, sent along, else its own [audit] public_key)."""
    from . import checkpoint as cp
    from .errors import AuditFailure
    from .inputs import json_document, read_small_file

    if not checkpoints and public_key is None:
        return dict(client.call("GET", "/audit/verify", params={"dossier": dossier_id}, ok=(409,)))
    body: dict[str, Any] = {"dossier": dossier_id, "checkpoints": [], "names": []}
    for path in checkpoints:
        raw = read_small_file(Path(path), "checkpoint", cp.CHECKPOINT_MAX_BYTES)
        where = f"checkpoint {path} (damaged or not a checkpoint)"
        body["checkpoints"].append(json_document(raw, where, AuditFailure))
        body["names"].append(path)
    if public_key is not None:
        pem = read_small_file(Path(public_key), "public key", cp.KEY_MAX_BYTES)
        body["public_key"] = pem.decode("utf-8", "replace")
    return dict(client.call("POST", "/audit/verify", json=body, ok=(409,)))


def _print_verification(document: dict[str, Any], as_json: bool) -> None:
    """``audit verify``'s output, from the one JSON shape (``shapes.Verification``); exit 7 on
    any problem."""
    from .errors import AuditFailure

    problems = document["problems"]
    if as_json:
        emit_json(document)
    else:
        entered_by_import = document["imported"]
        if entered_by_import:
            files = sorted({str(i["file"]) for i in entered_by_import})
            click.echo(
                f"{len(entered_by_import)} dossier(s) entered by import, not register "
                f"(from {', '.join(files)}): see dossier show"
            )
        for p in problems:
            where = f"entry {p['seq']}" if p["seq"] is not None else "dossier"
            click.echo(f"{p['dossier']} {where}: {p['problem']}")
        click.echo(
            f"{'ok' if document['ok'] else 'FAILED'}: {document['dossiers_checked']} dossier(s), "
            f"{document['entries_checked']} entries checked, {len(problems)} problem(s)"
        )
    if not document["ok"]:
        first = problems[0]
        error = AuditFailure(
            f"audit verification failed: {len(problems)} problem(s), first in dossier "
            f"{first['dossier']}"
            + (f" entry {first['seq']}" if first["seq"] is not None else "")
            + (f" (column {', '.join(first['columns'])})" if first.get("columns") else "")
        )
        error.reported = True  # type: ignore[attr-defined]
        raise error


def _public_key_path(app: Any, given: str | None) -> Path:
    from .errors import UsageError

    if given is not None:
        return Path(given)
    configured = app.config.audit.public_key
    if configured is None:
        raise UsageError("no public key: give --public-key KEY or set [audit] signing_key")
    return Path(configured)


@audit.command("keygen")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Private key file to create (default: [audit] signing_key).",
)
@click.pass_context
def audit_keygen(ctx: click.Context, output: str | None) -> None:
    """Create the Ed25519 key that signs checkpoints (private 0600; public key beside it)."""
    from .checkpoint import keygen
    from .errors import UsageError

    app = app_of(ctx)
    if output is None:
        if app.config.audit.signing_key is None:
            raise UsageError("give -o FILE or set [audit] signing_key")
        private = app.config.audit.signing_key
    else:
        private = Path(output)
    public = keygen(private)
    click.echo(f"wrote private key {private} and public key {public}", err=True)


@audit.command("checkpoint")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write a new checkpoint here."
)
@click.option(
    "--verify-only",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Only check FILE's signature (no database needed).",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False),
    help="With --verify-only: the signer's public key (default: [audit] public_key).",
)
@json_option
@click.pass_context
def audit_checkpoint(
    ctx: click.Context,
    output: str | None,
    verify_only: str | None,
    public_key: str | None,
    as_json: bool,
) -> None:
    """Sign every chain head (dossier, seq, hash) with [audit] signing_key, or check a file."""
    from . import checkpoint as cp
    from .errors import UsageError

    app = app_of(ctx)
    if (output is None) == (verify_only is None):
        raise UsageError("give either -o FILE (write) or --verify-only FILE (check)")
    if verify_only is not None:
        checked = cp.read(Path(verify_only), cp.load_public(_public_key_path(app, public_key)))
        document = {"ok": True, **checked.document()}
        if as_json:
            emit_json(document)
        else:
            click.echo(
                f"ok: {checked.path} signed by key {checked.key_id}, {checked.count} chain(s) "
                f"at {checked.created_at}, root {checked.root}"
            )
        return
    assert output is not None
    if app.config.audit.signing_key is None:
        raise UsageError("set [audit] signing_key (create it with `ocop audit keygen`)")
    written = app.ocop.sign_checkpoint(None, app.config.audit.signing_key)
    cp.write(written, Path(output))
    summary = {k: written[k] for k in ("created_at", "count", "entries", "root", "key_id")}
    if as_json:
        emit_json({"file": output, **summary})
    else:
        click.echo(
            f"wrote {output}: {written['count']} chain(s), {written['entries']} entries, "
            f"root {written['root']}",
            err=True,
        )


@audit.command("export")
@click.option("--since", help="Only entries at or after this date (YYYY-MM-DD, local) or instant.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="jsonl",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here (default stdout)."
)
@click.pass_context
def audit_export(ctx: click.Context, since: str | None, fmt: str, output: str | None) -> None:
    """The audit trail for auditors, oldest first per dossier."""
    from contextlib import nullcontext

    app = app_of(ctx)
    since_at = _parse_since(since, tz_of(app)) if since else None
    app.ocop.check_database()  # before the output file is opened
    wanted = _bar_wanted(data_on_stdout=not output)
    total = app.ocop.count_audit_entries(None, since=since_at) if wanted else 0
    with (
        output_file(output) as target,
        (
            target.open("w", encoding="utf-8", newline="")
            if target is not None
            else nullcontext(sys.stdout)
        ) as out,
        progress_bar("exporting", total) as advance,
    ):
        count = app.ocop.audit_export(None, out, fmt=fmt, since=since_at, progress=advance)
    if output:
        click.echo(f"wrote {count} entries to {output}", err=True)


def _parse_since(text: str, tz: Any) -> Any:
    from datetime import UTC, date, datetime

    from .errors import UsageError

    try:
        day = date.fromisoformat(text)
    except ValueError:
        from .config import parse_instant

        return parse_instant(text, "--since", UsageError)
    from .inputs import check_date

    check_date(day, "--since")
    return datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)


# --- server and logins ------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0: any free).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port (one per core).",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Run the HTTP JSON API (/api/v1, /openapi.json, /healthz, /readyz) until stopped."""
    import os

    from .server import serve as run

    app = app_of(ctx)
    writing(app)
    ocop = app.ocop.at(app.live_clock())
    ocop.check_database()
    ocop.dispose()  # worker processes open their own connections
    os.environ["OCOP_CONFIG"] = str(app.config_path.resolve())  # for the worker processes

    def announce(line: str) -> None:
        click.echo(line, err=True)
        if app.config.allow_clock_override:  # after the "serving on" line scripts wait for
            click.echo(
                "warning: [clock] allow_override is on: every client may date what it does "
                "with X-Ocop-Now (audit entries included): for rehearsals only",
                err=True,
            )

    run(ocop, host, port, workers=workers, announce=announce)


@cli.group()
def user() -> None:
    """Server logins of [users] keys: passwords."""


@user.command("set-password")
@click.argument("user_key", metavar="USER")
@click.pass_context
def user_set_password(ctx: click.Context, user_key: str) -> None:
    """Read USER's new password from stdin (one line) and store its Argon2 hash."""
    from .auth import MAX_PASSWORD

    app = app_of(ctx)
    # At most one character past the limit (then "too long"): stdin may never end (/dev/zero).
    line = sys.stdin.readline(MAX_PASSWORD + 2)
    password = line[:-1] if line.endswith("\n") else line
    app.ocop.set_password(user_key, password.rstrip("\r"))
    click.echo(f"password set for {user_key}", err=True)


@cli.group()
def token() -> None:
    """Bearer tokens for the API and for the CLI through a server."""


@token.command("create")
@click.option("--user", "user_key", required=True, metavar="USER", help="Whose token.")
@click.option("--expires", type=float, metavar="DAYS", help="Expire after DAYS (default never).")
@click.option("--label", help="What the token is for.")
@json_option
@click.pass_context
def token_create(
    ctx: click.Context, user_key: str, expires: float | None, label: str | None, as_json: bool
) -> None:
    """Make a token for USER and print it once; only its SHA-256 is stored."""
    app = app_of(ctx)
    made = app.ocop.create_token(user_key, expires_days=expires, label=label)
    if as_json:
        emit_json({"token": made.token, **made.info.document(app.now, app.ocop.tz)})
    else:
        from .render import short

        until = made.info.expires_at
        click.echo(made.token)
        click.echo(
            f"token {made.info.id} for {user_key}"
            + (f", expires {short(until, app.ocop.tz)}" if until else "")
            + ": shown once, keep it secret",
            err=True,
        )


@token.command("list")
@click.option("--user", "user_key", metavar="USER", help="Only this user's tokens.")
@json_option
@click.pass_context
def token_list(ctx: click.Context, user_key: str | None, as_json: bool) -> None:
    """Every token (never the token itself): owner, kind, expiry, status."""
    app = app_of(ctx)
    tokens = app.ocop.tokens(user_key)
    if as_json:
        emit_json([t.document(app.now, app.ocop.tz) for t in tokens])
        return
    from .render import short, table

    tz = app.ocop.tz
    click.echo(
        table(
            ["id", "user", "kind", "status", "created", "expires", "label"],
            [
                (
                    t.id,
                    t.user,
                    t.kind,
                    t.status(app.now),
                    short(t.created_at, tz),
                    short(t.expires_at, tz),
                    t.label or "",
                )
                for t in tokens
            ],
        )
    )


@token.command("revoke")
@click.argument("token_id", type=int, metavar="ID")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke token ID at once (see `ocop token list`)."""
    app = app_of(ctx)
    app.ocop.revoke_token(token_id)
    click.echo(f"token {token_id} revoked", err=True)


def _commands(group: click.Group, prefix: str = "") -> Iterable[tuple[str, click.Command]]:
    """Every command path, for the test that requires help text on each."""
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


def _register_subcommands() -> None:
    from .cli_calendar import calendar_group, workflow_migrate

    cli.add_command(calendar_group)
    workflow.add_command(workflow_migrate)


_register_subcommands()
