"""Workflow files are checked when loaded: every problem named with its file and item, at once.

The broken files are made in ``tmp_path`` from one small valid workflow (``MINI``) by one text
edit each, so each file has exactly the defect its name says. ``MINI`` itself must be valid,
otherwise every "broken" case would prove nothing.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import WORKFLOWS, Workspace, write_config

from ocop_workflow.definitions import check_workflow_file, load_workflow_file
from ocop_workflow.errors import WorkflowFileError
from ocop_workflow.migrate import upgrade
from ocop_workflow.store import Store, dossier_t

MINI = """\
# A small workflow with every kind of item, used to build broken files one defect at a time.
[workflow]
name = "mini"
version = "thử-1"
title = "Quy trình thử nghiệm"
legal_basis = "none"
stages = ["registration", "evaluation", "promotion"]

[fields.stars]
type = "int"
label = "Số sao"
min = 1
max = 5

[fields.certified_on]
type = "date"
label = "Ngày cấp giấy chứng nhận"
protected = true

[fields.note]
label = "Ghi chú"

[states.registration]
initial = true
stage = "registration"
label_vi = "Đăng ký ý tưởng"
label_en = "Registration"

[states.registration.deadline]
working_days = 15
basis = "Service target of the commune office"
remind_working_days_before = [5, 1]
escalate_every_working_days = 5
escalate_to = ["province_officer"]

[states.evaluation_province]
stage = "evaluation"
level = "province"
recognise_stars = [3, 4]
label_vi = "Tỉnh đánh giá"
label_en = "Province evaluation"

[states.promotion]
stage = "promotion"
label_vi = "Xúc tiến thương mại"
label_en = "Promotion"

[states.promotion.deadline]
months = 36
from_field = "certified_on"
basis = "Certificate valid 36 months"
remind_days_before = [30]
on_expiry = "expire"

[states.closed]
final = true
stage = "promotion"
label_vi = "Kết thúc"
label_en = "Closed"

[states.withdrawn]
final = true
stage = "promotion"
label_vi = "Rút hồ sơ"
label_en = "Withdrawn"

[[transitions]]
trigger = "submit"
source = "registration"
dest = "evaluation_province"
roles = ["producer", "commune_officer"]

[[transitions]]
trigger = "certify"
source = "evaluation_province"
dest = "promotion"
roles = ["province_officer"]
guards = ["stars_within_level"]
stamp = ["certified_on"]

[[transitions]]
trigger = "close"
source = "promotion"
dest = "closed"
roles = ["province_officer"]

[[transitions]]
trigger = "expire"
source = "promotion"
dest = "closed"
roles = ["system"]

[[transitions]]
trigger = "withdraw"
source = ["registration", "evaluation_province", "promotion"]
dest = "withdrawn"
roles = ["producer", "province_officer"]
guards = ["reason_given"]
"""

EXTRA_STATE = """
[states.{name}]
{flags}stage = "promotion"
label_vi = "Trạng thái thêm"
label_en = "Extra"
"""

EXTRA_TRANSITION = """
[[transitions]]
trigger = "{trigger}"
source = "{source}"
dest = "{dest}"
roles = ["province_officer"]
"""


def edit(old: str, new: str, text: str = MINI) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once in the base workflow"
    return text.replace(old, new)


#: name → (broken text, [(item, message fragment), …] that the problems must include)
BROKEN: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "no_initial_state": (
        edit("initial = true\n", ""),
        [("[states]", "exactly one state must have initial = true (found: none)")],
    ),
    "two_initial_states": (
        edit('level = "province"\n', 'level = "province"\ninitial = true\n'),
        [("[states]", "found: registration, evaluation_province")],
    ),
    "unknown_destination_state": (
        edit('dest = "evaluation_province"', 'dest = "evaluation_provnce"'),
        [("transitions[0]", "unknown destination state 'evaluation_provnce'")],
    ),
    "unknown_source_state": (
        edit('source = "evaluation_province"', 'source = "evaluation_provnce"'),
        [("transitions[1]", "unknown source state 'evaluation_provnce'")],
    ),
    "unknown_role": (
        edit(
            'dest = "closed"\nroles = ["province_officer"]',
            'dest = "closed"\nroles = ["provincial_officer"]',
        ),
        [("transitions[2]", "unknown role 'provincial_officer'")],
    ),
    "unknown_guard": (
        edit('guards = ["stars_within_level"]', 'guards = ["stars_in_range"]'),
        [("transitions[1]", "unknown guard 'stars_in_range'")],
    ),
    "unreachable_state": (
        MINI + EXTRA_STATE.format(name="archived", flags="final = true\n"),
        [("states.archived", "unreachable from the initial state 'registration'")],
    ),
    "state_that_cannot_reach_a_final_one": (
        MINI
        + EXTRA_STATE.format(name="limbo", flags="")
        + EXTRA_TRANSITION.format(trigger="park", source="registration", dest="limbo"),
        [("states.limbo", "cannot reach any final state")],
    ),
    "transition_out_of_a_final_state": (
        MINI + EXTRA_TRANSITION.format(trigger="reopen", source="closed", dest="registration"),
        [("transitions[5]", "'closed' is a final state: no transition may leave it")],
    ),
    "duplicate_trigger_and_source": (
        MINI + EXTRA_TRANSITION.format(trigger="close", source="promotion", dest="withdrawn"),
        [
            (
                "transitions[5]",
                "trigger 'close' from 'promotion' is already defined by transitions[2]",
            )
        ],
    ),
    "typo_in_workflow_key": (
        edit('title = "', 'titel = "'),
        [("[workflow]", "unknown key 'titel'")],
    ),
    "typo_in_state_key": (
        edit('label_vi = "Kết thúc"', 'lable_vi = "Kết thúc"'),
        [("states.closed", "unknown key 'lable_vi'"), ("states.closed", "'label_vi'")],
    ),
    "typo_in_transition_key": (
        edit('guards = ["reason_given"]', 'guard = ["reason_given"]'),
        [("transitions[4]", "unknown key 'guard'")],
    ),
    "typo_in_deadline_key": (
        edit("remind_working_days_before = [5, 1]", "remind_working_day_before = [5, 1]"),
        [("states.registration.deadline", "unknown key 'remind_working_day_before'")],
    ),
    "typo_in_field_key": (
        edit("min = 1\n", "minimum = 1\n"),
        [("fields.stars", "unknown key 'minimum'")],
    ),
    "typo_at_top_level": (
        MINI + '\n[field.extra]\nlabel = "x"\n',
        [("top level", "unknown key 'field'")],
    ),
    "wrong_type_of_flag": (
        edit("initial = true", 'initial = "yes"'),
        [("states.registration", "'initial' has the wrong type")],
    ),
    "wrong_type_of_amount": (
        edit("working_days = 15", 'working_days = "15"'),
        [("states.registration.deadline", "'working_days' has the wrong type")],
    ),
    "wrong_type_of_roles": (
        edit('roles = ["system"]', "roles = 7"),
        [("transitions[3]", "'roles' must be a string or a list of strings")],
    ),
    "invalid_toml": (
        edit('title = "Quy trình thử nghiệm"', 'title = "Quy trình thử nghiệm'),
        [("invalid TOML", "line 5")],
    ),
    "negative_reminder_offset": (
        edit("remind_working_days_before = [5, 1]", "remind_working_days_before = [5, -1]"),
        [("states.registration.deadline", "reminder offsets must be positive, not -1")],
    ),
    "escalation_to_an_unknown_role": (
        edit('escalate_to = ["province_officer"]', 'escalate_to = ["province_officers"]'),
        [("states.registration.deadline", "escalate_to: unknown role 'province_officers'")],
    ),
    "on_expiry_trigger_not_from_that_state": (
        edit('on_expiry = "expire"', 'on_expiry = "submit"'),
        [
            (
                "states.promotion.deadline",
                "on_expiry: trigger 'submit' does not exist from 'promotion'",
            )
        ],
    ),
    "from_field_that_is_not_a_date": (
        edit('from_field = "certified_on"', 'from_field = "note"'),
        [("states.promotion.deadline", "from_field: 'note' is not a date field")],
    ),
}

SEVERAL = edit(
    'guards = ["stars_within_level"]',
    'guards = ["stars_in_range"]',
    edit(
        'dest = "evaluation_province"',
        'dest = "evaluation_provnce"',
        edit(
            "remind_working_days_before = [5, 1]",
            "remind_working_days_before = [0, 1]",
            edit('label_vi = "Kết thúc"', 'lable_vi = "Kết thúc"'),
        ),
    ),
)
SEVERAL_PROBLEMS = [
    ("states.closed", "unknown key 'lable_vi'"),
    ("states.registration.deadline", "reminder offsets must be positive, not 0"),
    ("transitions[0]", "unknown destination state 'evaluation_provnce'"),
    ("transitions[1]", "unknown guard 'stars_in_range'"),
]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_named(problems: list[str], path: Path, expected: list[tuple[str, str]]) -> None:
    """Each expected (item, message) is one problem line, and every line names the file."""
    assert problems, f"{path.name}: no problem found"
    for line in problems:
        assert line.startswith(f"{path}: "), line
    for item, message in expected:
        assert any(item in line and message in line for line in problems), (
            f"{path.name}: no problem names {item!r} with {message!r}; got {problems}"
        )


@pytest.fixture
def cli(tmp_path: Path) -> Workspace:
    """A workspace for ``ocop workflow validate`` (no database needed)."""
    write_config(tmp_path)
    return Workspace(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")


# --- valid files -------------------------------------------------------------------------------


def test_the_base_of_the_broken_files_is_itself_valid(tmp_path: Path) -> None:
    definition, problems = check_workflow_file(write(tmp_path, "mini", MINI))
    assert problems == []
    assert definition is not None and definition.name == "mini"
    assert definition.initial.name == "registration"


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_workflow_file_loads_without_problems(path: Path) -> None:
    definition, problems = check_workflow_file(path)
    assert problems == []
    assert definition is not None
    assert definition.name == path.stem
    assert definition.version == tomllib.loads(path.read_text("utf-8"))["workflow"]["version"]


def test_every_shipped_workflow_passes_the_validate_command(cli: Workspace) -> None:
    shipped = sorted(WORKFLOWS.glob("*.toml"))
    assert shipped
    default = cli.run("workflow", "validate")  # the configured folder
    assert default.code == 0, default
    explicit = cli.run("workflow", "validate", *map(str, shipped), "--json")
    assert explicit.code == 0, explicit
    document = explicit.json()
    assert document["ok"] is True and document["problems"] == []
    assert sorted(document["files"]) == sorted(map(str, shipped))


def test_every_shipped_workflow_has_the_names_scripts_rely_on() -> None:
    """interface.md: stages, states and triggers shared by every rule version."""
    for path in sorted(WORKFLOWS.glob("*.toml")):
        wf = load_workflow_file(path)
        assert wf.stages == (
            "registration",
            "business_plan",
            "production",
            "evaluation",
            "promotion",
            "review",
        ), path.name
        finals = {s.name for s in wf.states.values() if s.final}
        assert finals == {"closed", "rejected", "withdrawn", "expired", "revoked"}, path.name
        for state in ("registration", "business_plan", "production", "promotion", "review"):
            assert state in wf.states, (path.name, state)
        levels = [s for s in wf.states if s.startswith("evaluation_")]
        assert levels and all(wf.states[s].level for s in levels), path.name
        assert wf.initial.name == "registration"
        for trigger in (
            "accept_idea",
            "approve_plan",
            "submit_dossier",
            "forward",
            "return_dossier",
            "certify",
            "not_certified",
            "start_review",
            "renew",
            "close",
            "reject",
            "withdraw",
            "revoke",
            "expire",
        ):
            assert trigger in wf.triggers, (path.name, trigger)
        expire = [t for t in wf.transitions if t.trigger == "expire"]
        assert all(t.roles == ("system",) for t in expire), path.name
        assert not any(t.remind for t in expire), path.name  # nobody's to-do


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.toml")), ids=lambda p: p.name)
def test_the_producer_or_any_officer_may_withdraw_under_every_rule_version(path: Path) -> None:
    """interface.md: ``withdraw`` is for the producer or any officer, whatever the rule version."""
    wf = load_workflow_file(path)
    officers = {"commune_officer", "district_officer", "province_officer", "central_officer"}
    withdraw = [t for t in wf.transitions if t.trigger == "withdraw"]
    assert withdraw
    levels = {wf.states[t.source].level for t in wf.transitions if wf.states[t.source].level}
    for t in withdraw:
        assert "producer" in t.roles
        # every officer of a level the version has, and the commune officer everywhere
        expected = {f"{level}_officer" for level in levels} | {"commune_officer"}
        assert expected <= set(t.roles) <= officers | {"producer"}, t.roles


# --- broken files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_workflow_file_is_refused_naming_its_problem(tmp_path: Path, name: str) -> None:
    text, expected = BROKEN[name]
    path = write(tmp_path, name, text)
    definition, problems = check_workflow_file(path)
    assert definition is None
    assert_named(problems, path, expected)
    with pytest.raises(WorkflowFileError) as caught:
        load_workflow_file(path)
    assert caught.value.problems == problems


def test_several_problems_in_one_file_are_all_reported_at_once(
    tmp_path: Path, cli: Workspace
) -> None:
    path = write(tmp_path, "several", SEVERAL)
    definition, problems = check_workflow_file(path)
    assert definition is None
    assert_named(problems, path, SEVERAL_PROBLEMS)
    result = cli.run("workflow", "validate", str(path))
    assert result.code == 1, result
    for item, message in SEVERAL_PROBLEMS:
        assert any(
            line.startswith(f"{path}: ") and item in line and message in line
            for line in result.stdout.splitlines()
        ), (item, message, result)
    assert result.stderr.startswith("error: "), result


def test_validate_command_lists_every_problem_of_every_file_and_exits_1(
    tmp_path: Path, cli: Workspace
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    paths = {name: write(folder, name, text) for name, (text, _) in BROKEN.items()}
    good = write(folder, "mini", MINI)
    result = cli.run("workflow", "validate", *map(str, [good, *paths.values()]), "--json")
    assert result.code == 1, result
    document = result.json()
    assert document["ok"] is False
    assert len(document["files"]) == len(BROKEN) + 1
    # exactly the problems the library finds, file by file, none lost and none added
    expected_all = [p for path in [good, *paths.values()] for p in check_workflow_file(path)[1]]
    assert document["problems"] == expected_all
    for name, path in paths.items():
        mine = [p for p in document["problems"] if p.startswith(f"{path}: ")]
        assert_named(mine, path, BROKEN[name][1])
    assert not [p for p in document["problems"] if p.startswith(f"{good}: ")]

    text = cli.run("workflow", "validate", str(folder))  # a folder: every *.toml in it
    assert text.code == 1, text
    assert text.stdout.splitlines() == [
        p for path in sorted(folder.glob("*.toml")) for p in check_workflow_file(path)[1]
    ]
    assert re.match(r"error: \d+ problem", text.stderr), text


def test_validate_names_a_file_that_does_not_exist(tmp_path: Path, cli: Workspace) -> None:
    missing = tmp_path / "ocop-9999.toml"
    result = cli.run("workflow", "validate", str(missing))
    assert result.code == 1, result
    assert str(missing) in result.stdout + result.stderr


def test_two_files_with_the_same_workflow_name_are_refused(tmp_path: Path, cli: Workspace) -> None:
    first = write(tmp_path, "mini", MINI)
    second = write(tmp_path, "mini-copy", MINI)
    result = cli.run("workflow", "validate", str(first), str(second), "--json")
    assert result.code == 1, result
    assert any("'mini'" in p and str(second) in p for p in result.json()["problems"])


# --- pinning -----------------------------------------------------------------------------------


def initialised(root: Path) -> Workspace:
    """A workspace in ``root`` (config already written) with its SQLite schema made in-process."""
    url = f"sqlite:///{root / 'ocop.db'}"
    store = Store(url)
    try:
        upgrade(store)
    finally:
        store.dispose()
    return Workspace(root, url)


def test_register_pins_the_workflow_name_and_version_on_the_dossier(tmp_path: Path) -> None:
    """A dossier keeps the rule version it was registered under, even after the file changes."""
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, folder)
    config = write_config(tmp_path)
    config.write_text(
        config.read_text("utf-8").replace(f'"{WORKFLOWS}"', '"workflows"'), encoding="utf-8"
    )
    ws = initialised(tmp_path)
    shipped = tomllib.loads((folder / "ocop-1489.toml").read_text("utf-8"))["workflow"]
    args = (
        "dossier",
        "register",
        "--product",
        "Cà phê bột Ia Le",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--workflow",
        "ocop-1489",
        "--json",
    )
    first = ws.run(*args, user="lan", now="2026-03-02T09:00+07:00", check=True).json()
    assert (first["workflow"], first["workflow_version"]) == ("ocop-1489", shipped["version"])

    amended = "1489/QĐ-TTg sửa đổi 2026"
    path = folder / "ocop-1489.toml"
    path.write_text(
        path.read_text("utf-8").replace(
            f'version = "{shipped["version"]}"', f'version = "{amended}"'
        ),
        encoding="utf-8",
    )
    second = ws.run(*args, user="lan", now="2026-03-02T10:00+07:00", check=True).json()
    assert (second["workflow"], second["workflow_version"]) == ("ocop-1489", amended)
    shown = ws.run("dossier", "show", first["id"], "--json", user="lan", check=True).json()
    assert (shown["workflow"], shown["workflow_version"]) == ("ocop-1489", shipped["version"])
    engine = sa.create_engine(ws.url)
    try:
        with engine.connect() as conn:
            stored = dict(
                conn.execute(sa.select(dossier_t.c.id, dossier_t.c.workflow_version)).all()
            )
    finally:
        engine.dispose()
    assert stored == {first["id"]: shipped["version"], second["id"]: amended}


def test_register_with_an_unknown_workflow_is_not_found(tmp_path: Path) -> None:
    write_config(tmp_path)
    ws = initialised(tmp_path)
    result = ws.run(
        "dossier",
        "register",
        "--product",
        "Cà phê",
        "--producer",
        "HTX Cà phê Ia Le",
        "--commune",
        "Ia Le",
        "--workflow",
        "ocop-9999",
        user="lan",
        now="2026-03-02T09:00+07:00",
    )
    assert result.code == 3, result
    assert "ocop-9999" in result.stderr
