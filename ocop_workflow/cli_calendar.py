"""``ocop calendar``: the office's working-day questions, answered from the layered calendar.

Needs only the config (time zone, ``[engine] holidays``, ``[calendar]``), never the database.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import click

from .cli_base import app_of, emit_json, json_option, writing

if TYPE_CHECKING:
    from .calendar import WorkCalendar


@click.group("calendar")
def calendar_group() -> None:
    """Days off and worked Saturdays with their sources; counting working days."""


def _calendar(ctx: click.Context) -> WorkCalendar:
    from .calendar import WorkCalendar

    config = app_of(ctx).config
    return WorkCalendar(config.timezone, config.holidays, local=config.calendar_days)


@calendar_group.command("show")
@click.option("--year", type=click.IntRange(1990, 2100), required=True, help="The year to list.")
@json_option
@click.pass_context
def calendar_show(ctx: click.Context, year: int, as_json: bool) -> None:
    """Every day off and every worked weekend day of YEAR, each with its name and source."""
    cal = _calendar(ctx)
    days_off, worked = cal.year(year)
    if as_json:
        emit_json({"year": year, "days_off": days_off, "worked_days": worked})
        return
    from .calendar import WEEKDAY_NAMES

    def line(entry: dict[str, str]) -> str:
        day = date.fromisoformat(entry["date"])
        weekday = WEEKDAY_NAMES[day.weekday()]
        return f"  {day:%d/%m/%Y} {weekday:<8} {entry['name']} — {entry['source']}"

    click.echo(f"Ngày nghỉ năm {year} ({len(days_off)}):")
    for entry in days_off:
        click.echo(line(entry))
    click.echo(f"Ngày cuối tuần đi làm ({len(worked)}):")
    for entry in worked:
        click.echo(line(entry))


@calendar_group.command("add")
@click.option(
    "--from", "start", required=True, metavar="DATE", help="Start day YYYY-MM-DD (not counted)."
)
@click.option(
    "--working-days", "count", type=click.IntRange(0, 2000), required=True, help="How many."
)
@json_option
@click.pass_context
def calendar_add(ctx: click.Context, start: str, count: int, as_json: bool) -> None:
    """The N-th working day after DATE, naming every day off skipped on the way."""
    from .calendar import WEEKDAY_NAMES
    from .errors import UsageError

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise UsageError(f"--from {start}: expected a date YYYY-MM-DD") from None
    if not 1990 <= first.year <= 2095:
        raise UsageError(f"--from {start}: outside the calendar's years 1990-2095")
    cal = _calendar(ctx)
    result = cal.add_working_days(first, count)
    skipped = []
    for off in cal.days_off_between(first, result):
        named = cal.named(off.day)
        skipped.append(
            {"date": off.day.isoformat(), "name": off.why, "source": named[1] if named else None}
        )
    if as_json:
        emit_json(
            {
                "from": first.isoformat(),
                "working_days": count,
                "date": result.isoformat(),
                "days_off": skipped,
            }
        )
        return
    click.echo(f"{result.isoformat()} ({WEEKDAY_NAMES[result.weekday()]})")
    for entry in skipped:
        if entry["source"]:
            click.echo(f"  bỏ qua {entry['date']} {entry['name']} — {entry['source']}")


# --- workflow migrate (registered under `ocop workflow`) ----------------------------------------


@click.command("migrate")
@click.option(
    "--from", "source", required=True, metavar="WORKFLOW", help="The rules dossiers are on."
)
@click.option("--to", "target", required=True, metavar="WORKFLOW", help="The rules to put them on.")
@click.option(
    "--plan", "plan_path", required=True, metavar="FILE.toml", help="State/field mapping."
)
@click.option("--dry-run", is_flag=True, help="Only the pre-flight report; write nothing.")
@click.option("--reason", metavar="TEXT", help="Why (recorded in each dossier's history).")
@json_option
@click.pass_context
def workflow_migrate(
    ctx: click.Context,
    source: str,
    target: str,
    plan_path: str,
    dry_run: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Move the dossiers in flight on one rule version (or file content) to another, audited."""
    from .errors import OcopError

    app = app_of(ctx)
    actor = app.actor()
    if not dry_run:
        writing(app)
    try:
        document = app.ocop.migrate_workflow(
            actor,
            source=source,
            target=target,
            plan=plan_path,  # as typed: "./NAME" is a file, "NAME" a shipped plan
            dry_run=dry_run,
            reason=reason,
        )
    except OcopError as exc:
        report = getattr(exc, "document", None)
        if report is not None:
            _print_migration(report, as_json)
            exc.reported = as_json  # type: ignore[attr-defined]
        raise
    _print_migration(document, as_json)
    if document["failed"]:
        from .errors import Conflict

        error = Conflict(f"{document['failed']} dossier(s) changed meanwhile: run again for them")
        error.reported = as_json  # type: ignore[attr-defined]
        raise error


def _print_migration(document: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(document)
        return
    from .render import minute

    mode = "pre-flight (dry run)" if document["dry_run"] else "migration"
    click.echo(
        f"{mode}: {document['from']} {document['from_version']} → {document['to']} "
        f"{document['to_version']}, plan sha256 {document['plan_sha256'][:12]}…"
    )
    for d in document["dossiers"]:
        line = f"  {d['id']}: {d['from']} → {d['to'] or '?'}"
        if d["problems"]:
            line += "  REFUSED: " + "; ".join(d["problems"])
        else:
            line += (
                f"; timers: {d['timers_cancelled']} cancelled, {len(d['timers_planned'])} planned"
            )
            if d["deadline_at"]:
                line += f"; deadline {minute(d['deadline_at'])}"
            if d["documents_missing"]:
                line += "; documents missing: " + ", ".join(d["documents_missing"])
            if d["guards_failing"]:
                line += "; guards now failing: " + "; ".join(
                    f"{t} ({', '.join(f.split(':')[0] for f in fs)})"
                    for t, fs in d["guards_failing"].items()
                )
            if d["error"]:
                line += f"  NOT MIGRATED: {d['error']}"
        click.echo(line)
    click.echo(
        f"{len(document['dossiers'])} dossier(s): {document['migrated']} migrated, "
        f"{document['refused']} refused, {document['failed']} failed"
    )
