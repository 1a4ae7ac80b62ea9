"""config.toml: every documented key accepted, every mistake refused naming the key.

Most tests call ``parse_config`` on a dict (no file); the few about files, the environment and
the command line use real files and a real ``ocop`` process.
"""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Workspace, write_config

from ocop_workflow.channels import CHANNELS
from ocop_workflow.clock import clock_from_env
from ocop_workflow.config import TOP_LEVEL, load_config, parse_config
from ocop_workflow.errors import ConfigError
from ocop_workflow.migrate import upgrade
from ocop_workflow.store import Store

#: Every key the README's configuration table documents, with a value other than its default.
EVERY_KEY = """
[database]
url = "sqlite:///data/ocop.db"

[engine]
workflows_dir = "quy-trinh"
default_workflow = "ocop-148"
timezone = "Asia/Bangkok"
holidays = "VN"

[clock]
allow_override = true

[cli]
default_user = "lan"

[scheduler]
sweep_interval_seconds = 12.5
batch_size = 50

[notifications]
channels = ["file", "email", "webhook"]
max_attempts = 7
backoff_seconds = 2
batch_size = 20

[notifications.file]
path = "hop-thu/outbox.jsonl"

[notifications.email]
host = "smtp.gialai.gov.vn"
port = 587
sender = "ocop@gialai.gov.vn"
starttls = true
username = "ocop"
password_env = "OCOP_SMTP_PASSWORD"
timeout_seconds = 5

[notifications.webhook]
url = "https://ocop.gialai.gov.vn/hook"
secret_env = "OCOP_WEBHOOK_SECRET"
timeout_seconds = 3.5

[security]
require_os_user = true

[documents]
dir = "tai-lieu"

[users.lan]
name = "Nguyễn Thị Lan"
roles = ["commune_officer"]
communes = ["Ia Le"]
email = "lan@example.vn"
os_user = "lan"

[users.hung]
name = "Trần Văn Hùng"
roles = ["province_officer", "council_chair"]
communes = ["*"]

[users.mai]
name = "Đỗ Thị Mai"
roles = ["council_member"]
communes = ["*"]

[users.htx_iale]
name = "HTX Cà phê Ia Le"
roles = ["producer"]
communes = ["Ia Le"]
organisation = "HTX Cà phê Ia Le"

[councils.tinh]
title = "Hội đồng đánh giá, phân hạng sản phẩm OCOP tỉnh Gia Lai"
level = "province"
chair = "hung"
members = ["hung", "mai"]
communes = ["*"]

[targets.2026]
products_supported = 120
new_products = 40
new_products_3_stars = 30
upgrades = 10
upgrades_to_4_stars = 5
certified = 45
certified_4_stars = 8
reviewed = 20
renewals = 6
organisations = 25
"""

MINIMAL = """
[users.lan]
roles = ["commune_officer"]
"""


def data(text: str = EVERY_KEY) -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(text))


def parse(
    raw: dict[str, Any], env: dict[str, str] | None = None, folder: Path = Path("/srv/ocop")
) -> Any:
    return parse_config(raw, folder / "config.toml", env or {})


def refused(raw: dict[str, Any], *fragments: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(raw, env)
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message
    return caught.value.message


def put(raw: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set ``a.b.c`` in a nested dict, creating tables on the way."""
    *tables, key = dotted.split(".")
    node = raw
    for table in tables:
        node = node.setdefault(table, {})
    node[key] = value
    return raw


# --- accepted ----------------------------------------------------------------------------------


def test_every_documented_key_is_accepted_and_read() -> None:
    config = parse(data())
    base = Path("/srv/ocop")
    assert config.database_url == f"sqlite:///{base / 'data/ocop.db'}"
    assert config.workflows_dir == base / "quy-trinh"
    assert (config.default_workflow, config.timezone, config.holidays) == (
        "ocop-148",
        "Asia/Bangkok",
        "VN",
    )
    assert config.allow_clock_override is True
    assert config.default_user == "lan"
    assert (config.sweep_interval_seconds, config.sweep_batch_size) == (12.5, 50)
    n = config.notifications
    assert n.channels == ("file", "email", "webhook")
    assert (n.max_attempts, n.backoff_seconds, n.batch_size) == (7, 2.0, 20)
    assert n.settings["file"].path == base / "hop-thu/outbox.jsonl"
    email, webhook = n.settings["email"], n.settings["webhook"]
    assert (email.host, email.port, email.sender, email.starttls) == (
        "smtp.gialai.gov.vn",
        587,
        "ocop@gialai.gov.vn",
        True,
    )
    assert (email.username, email.password_env, email.timeout_seconds) == (
        "ocop",
        "OCOP_SMTP_PASSWORD",
        5,
    )
    assert (webhook.url, webhook.secret_env, webhook.timeout_seconds) == (
        "https://ocop.gialai.gov.vn/hook",
        "OCOP_WEBHOOK_SECRET",
        3.5,
    )
    assert config.require_os_user is True
    assert config.documents_dir == base / "tai-lieu"
    lan = config.user("lan")
    assert (lan.name, lan.roles, lan.communes, lan.email, lan.os_user) == (
        "Nguyễn Thị Lan",
        frozenset({"commune_officer"}),
        frozenset({"Ia Le"}),
        "lan@example.vn",
        "lan",
    )
    assert config.user("htx_iale").organisation == "HTX Cà phê Ia Le"
    assert config.user("hung").covers("Ia Phang")
    council = config.councils["tinh"]
    assert (council.level, council.chair, set(council.members)) == (
        "province",
        "hung",
        {"hung", "mai"},
    )
    assert config.targets[2026]["new_products_3_stars"] == 30
    assert len(config.targets[2026]) == 10


def test_the_example_config_file_loads() -> None:
    config = load_config(ROOT / "config.toml", {})
    assert config.path == (ROOT / "config.toml").resolve()
    assert config.workflows_dir is None  # the shipped rule files, found without configuration
    assert config.users
    assert config.default_user is None or config.default_user in config.users


def test_a_config_of_users_only_takes_the_documented_defaults() -> None:
    config = parse(data(MINIMAL))
    assert config.database_url == "sqlite:////srv/ocop/ocop.db"
    assert config.workflows_dir is None
    assert (config.default_workflow, config.timezone, config.holidays) == (
        "ocop-1489",
        "Asia/Ho_Chi_Minh",
        "VN",
    )
    assert config.allow_clock_override is False and config.require_os_user is False
    assert config.sweep_interval_seconds == 30
    assert config.notifications.channels == ("file",)
    assert config.notifications.settings["file"].path == Path("/srv/ocop/outbox.jsonl")
    assert config.documents_dir == Path("/srv/ocop/documents")


# --- unknown keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dotted",
    [
        "databse",
        "database.path",
        "engine.workflow_dir",
        "clock.allow_overide",
        "cli.user",
        "scheduler.interval",
        "notifications.channel",
        "notifications.file.file",
        "notifications.email.server",
        "notifications.webhook.secret",
        "security.require_login",
        "documents.folder",
        "users.lan.commune",
        "users.htx_iale.organization",
        "councils.tinh.president",
    ],
)
def test_an_unknown_key_at_any_level_is_refused_by_name(dotted: str) -> None:
    raw = put(data(), dotted, "x")
    message = refused(raw, f"'{dotted}'")
    assert "unknown" in message


def test_an_unknown_key_is_refused_through_the_command_with_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = config.read_text("utf-8").replace("[engine]\n", '[engine]\nworkflow_dir = "wf"\n')
    config.write_text(text, encoding="utf-8")
    ws = Workspace(tmp_path, f"sqlite:///{tmp_path / 'ocop.db'}")
    result = ws.run("dossier", "list", user="lan")
    assert result.code == 1, result
    assert result.stderr.startswith("error: ") and "engine.workflow_dir" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = ws.run("dossier", "list", "--json", user="lan")
    assert as_json.code == 1
    assert as_json.json()["error"]["code"] == "config"


# --- wrong types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("database.url", 5),
        ("engine.timezone", 7),
        ("engine.workflows_dir", ["workflows"]),
        ("clock.allow_override", "yes"),
        ("clock.allow_override", 1),
        ("cli.default_user", 3),
        ("scheduler.sweep_interval_seconds", "30"),
        ("scheduler.sweep_interval_seconds", True),
        ("scheduler.batch_size", 2.5),
        ("notifications.channels", "file"),
        ("notifications.max_attempts", "5"),
        ("notifications.email.port", "25"),
        ("notifications.email.starttls", "no"),
        ("notifications.webhook.timeout_seconds", "10"),
        ("security.require_os_user", 0),
        ("documents.dir", False),
        ("users.lan.roles", "commune_officer"),
        ("users.lan.communes", "Ia Le"),
        ("users.lan.email", ["lan@example.vn"]),
        ("councils.tinh.members", "hung"),
        ("targets.2026.new_products", "40"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_by_name(dotted: str, value: Any) -> None:
    refused(put(data(), dotted, value), f"'{dotted}'")


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("scheduler.sweep_interval_seconds", 0),
        ("notifications.max_attempts", -1),
        ("notifications.email.port", 0),
    ],
)
def test_a_count_or_interval_that_is_not_positive_is_refused(dotted: str, value: Any) -> None:
    refused(put(data(), dotted, value), f"'{dotted}'", "positive")


@pytest.mark.parametrize(
    "table",
    [
        "database",
        "engine",
        "clock",
        "cli",
        "scheduler",
        "notifications",
        "security",
        "documents",
        "users",
        "councils",
        "targets",
    ],
)
def test_a_table_given_as_a_plain_value_is_refused_by_name(table: str) -> None:
    raw = data()
    raw[table] = "x"
    refused(raw, f"'{table}'")


@pytest.mark.parametrize("table", ["notifications.file", "notifications.email", "users.lan"])
def test_a_nested_table_given_as_a_plain_value_is_refused_by_name(table: str) -> None:
    refused(put(data(), table, "x"), f"'{table}'")


def test_an_unknown_time_zone_is_refused() -> None:
    refused(put(data(), "engine.timezone", "Asia/Saigon City"), "engine.timezone")


def test_an_unknown_notification_channel_is_refused() -> None:
    refused(put(data(), "notifications.channels", ["file", "zalo"]), "zalo")


class ZaloChannel:
    """A channel a province might add: one class, registered; config.py is not edited."""

    name = "zalo"
    required_keys = ("oa_id",)

    def config_keys(self) -> dict[str, Any]:
        from ocop_workflow.config_checks import integer, positive, text

        return {"oa_id": text, "token_env": text, "retries": positive(integer)}

    def settings(self, values: Any, resolve: Any) -> dict[str, Any]:
        return {"oa_id": values.get("oa_id"), "retries": values.get("retries", 3)}

    def address(self, user: Any) -> str | None:
        return user.key

    def secret_names(self, config: Any) -> tuple[str, ...]:
        return (config.settings["zalo"].get("token_env") or "OCOP_ZALO_TOKEN",)

    def config_secrets(self, config: Any) -> list[str]:
        return []

    def send(self, row: Any, config: Any, env: Any) -> None:
        raise AssertionError("not sent in this test")


def test_a_registered_channel_class_brings_its_config_table_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ocop_workflow import channels

    raw = put(data(), "notifications.channels", ["file", "zalo"])
    refused(copy.deepcopy(raw), "unknown channel 'zalo'")  # not registered yet
    refused(put(data(), "notifications.zalo.oa_id", "x"), "'notifications.zalo'")
    monkeypatch.setitem(channels.CHANNELS, "zalo", ZaloChannel())
    put(raw, "notifications.zalo.oa_id", "OCOP Gia Lai")
    config = parse(copy.deepcopy(raw), env={"OCOP_ZALO_TOKEN": "t0ken"})
    assert config.notifications.settings["zalo"] == {"oa_id": "OCOP Gia Lai", "retries": 3}
    assert config.notifications.secrets == {"OCOP_ZALO_TOKEN": "t0ken"}  # its secret resolved
    refused(
        put(copy.deepcopy(raw), "notifications.zalo.retry", 2),
        "unknown config key 'notifications.zalo.retry'",
        "oa_id, retries, token_env",
    )
    refused(put(copy.deepcopy(raw), "notifications.zalo.retries", 0), "zalo.retries", "positive")
    refused(put(copy.deepcopy(raw), "notifications.zalo.oa_id", 5), "zalo.oa_id", "a string")
    del raw["notifications"]["zalo"]
    refused(raw, "missing required config key 'notifications.zalo.oa_id'")  # enabled: needed
    disabled = put(data(), "notifications.zalo.retries", 5)  # a table of a channel not enabled
    assert parse(disabled).notifications.settings["zalo"]["retries"] == 5


# --- required keys, roles ----------------------------------------------------------------------


def test_a_user_without_roles_is_refused() -> None:
    raw = data()
    del raw["users"]["lan"]["roles"]
    refused(raw, "'users.lan.roles'", "missing")


def test_a_producer_without_organisation_is_refused() -> None:
    raw = data()
    del raw["users"]["htx_iale"]["organisation"]
    refused(raw, "'users.htx_iale.organisation'")


def test_a_council_without_a_level_is_refused() -> None:
    raw = data()
    del raw["councils"]["tinh"]["level"]
    refused(raw, "'councils.tinh.level'")


def test_a_council_member_who_is_not_a_user_is_refused() -> None:
    refused(put(data(), "councils.tinh.members", ["hung", "ba"]), "councils.tinh", "'ba'")


def test_the_system_role_cannot_be_given_to_a_user() -> None:
    refused(
        put(data(), "users.lan.roles", ["commune_officer", "system"]), "'users.lan.roles'", "system"
    )


def test_a_user_cannot_be_named_system() -> None:
    raw = data()
    raw["users"]["system"] = {"roles": ["province_officer"], "communes": ["*"]}
    refused(raw, "'users.system'")


def test_an_unknown_role_is_refused() -> None:
    refused(put(data(), "users.lan.roles", ["xa_officer"]), "'users.lan.roles'", "xa_officer")


def test_two_users_with_the_same_login_are_refused() -> None:
    refused(put(data(), "users.hung.os_user", "lan"), "'users.hung.os_user'", "lan")


def test_a_default_user_who_is_not_configured_is_refused() -> None:
    refused(put(data(), "cli.default_user", "tuan"), "'cli.default_user'", "tuan")


# --- paths, environment ------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "srv" / "ocop"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(EVERY_KEY, encoding="utf-8")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../srv/ocop/config.toml"), {})
    assert config.path == folder / "config.toml"
    assert config.database_url == f"sqlite:///{folder / 'data' / 'ocop.db'}"
    assert config.workflows_dir == folder / "quy-trinh"
    assert config.notifications.settings["file"].path == folder / "hop-thu" / "outbox.jsonl"
    assert config.documents_dir == folder / "tai-lieu"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    raw = put(data(), "engine.workflows_dir", str(tmp_path / "wf"))
    put(raw, "database.url", f"sqlite:///{tmp_path / 'db.sqlite'}")
    put(raw, "notifications.file.path", str(tmp_path / "out.jsonl"))
    config = parse(raw)
    assert config.workflows_dir == tmp_path / "wf"
    assert config.database_url == f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert config.notifications.settings["file"].path == tmp_path / "out.jsonl"


def test_ocop_database_url_overrides_the_config() -> None:
    url = "postgresql+psycopg://ocop@db.gialai.gov.vn/ocop"
    assert parse(data(), {"OCOP_DATABASE_URL": url}).database_url == url
    assert parse(data(MINIMAL), {"OCOP_DATABASE_URL": url}).database_url == url


def test_a_missing_config_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "khong-co.toml"
    with pytest.raises(ConfigError, match=r"khong-co\.toml"):
        load_config(missing, {})


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[database]\nurl = "sqlite:///ocop.db"\n\n[engine\ntimezone = "x"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(path) in caught.value.message
    assert "line 4" in caught.value.message


# --- the clock ---------------------------------------------------------------------------------


def test_ocop_now_is_refused_unless_the_config_allows_it() -> None:
    config = parse(data(MINIMAL))
    with pytest.raises(ConfigError, match="allow_override"):
        clock_from_env(config, {"OCOP_NOW": "2026-03-02T09:00+07:00"}).now()


def test_ocop_now_is_the_instant_when_allowed() -> None:
    config = parse(data())
    now = clock_from_env(config, {"OCOP_NOW": "2026-03-02T09:00+07:00"}).now()
    assert now == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    assert now.utcoffset() is not None


def test_without_ocop_now_the_real_clock_is_used() -> None:
    before = datetime.now(UTC)
    now = clock_from_env(parse(data(MINIMAL)), {}).now()
    assert before <= now <= datetime.now(UTC)


@pytest.mark.parametrize("text", ["hôm nay", "2026-03-02 25:00+07:00", "2026-03-02T09:00"])
def test_a_malformed_or_naive_ocop_now_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="OCOP_NOW"):
        clock_from_env(parse(data()), {"OCOP_NOW": text}).now()


def test_a_refused_clock_override_is_exit_1_from_the_command(tmp_path: Path) -> None:
    write_config(tmp_path, allow_override=False)
    url = f"sqlite:///{tmp_path / 'ocop.db'}"
    store = Store(url)
    upgrade(store)  # an initialised database: the refusal must come from the clock
    store.dispose()
    ws = Workspace(tmp_path, url)
    result = ws.run("dossier", "list", user="lan", now="2026-03-02T09:00+07:00")
    assert result.code == 1, result
    assert "OCOP_NOW" in result.stderr and "allow_override" in result.stderr


@pytest.mark.parametrize(
    "section",
    # Every section of config.TOP_LEVEL whose keys are fixed (users, councils and targets are
    # tables named by the province; [calendar] days has its own row), and the channels' tables.
    [
        *sorted(TOP_LEVEL - {"users", "councils", "targets", "calendar"}),
        *(f"notifications.{name}" for name in CHANNELS),
    ],
)
def test_every_key_config_accepts_is_in_the_readme_table(section: str) -> None:
    """The README's key table lists what config.py accepts (the keys a section knows are those
    its 'unknown key' error names): a row `section.key`, or `section.a` / `b` for several."""
    import re

    with pytest.raises(ConfigError) as refused:
        parse_config(put({}, f"{section}.no_such_key", 1), Path("/srv/ocop/config.toml"), {})
    listed = re.search(r"known keys of \[[^\]]+\]: ([^)]*)\)", refused.value.message)
    assert listed, refused.value.message
    rows = [
        line
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith(f"| `{section}.")
    ]
    for key in listed.group(1).split(", "):
        assert any(f"`{section}.{key}`" in row or re.search(rf"/ `{key}`", row) for row in rows), (
            f"{section}.{key} is not in the README's config table"
        )
